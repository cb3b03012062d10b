"""Does the CPU thread count change the networks' results? And what does that do to decoding?

    python benchmarks/thread_determinism.py [--model EVC-LL | --weights src/evc/weights/EVC-SS] [--threads 1 2 3 4 8 16]

Part 1 runs each network of a model (seeded random weights, or trained ones with --weights) in a fresh
process per thread count and prints the largest difference to the 2-thread result. Part 2 encodes
kodim05 with 2 threads and decodes it in fresh processes with each thread count, printing how many
8-bit values differ from the encoder's reconstruction (the entropy parameters are exact, so the latent
decodes the same; only g_s's float rounding may differ).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

KODIM05 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak" / "kodim05.png"

# Both child scripts: the model named by argv[2], with seeded random weights or the weights file in the
# script's last argument.
MODEL = """
import sys, torch, evc
torch.set_num_threads(int(sys.argv[1]))
def model():
    weights = sys.argv[-1]
    return evc.create_model(sys.argv[2], seed=0) if weights == "-" else evc.load(weights=weights, device="cpu").model
"""

NETWORKS = MODEL + """
m = model().eval()
x = torch.rand(1, 3, 512, 768, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    y = m.g_a(x) / m.rate.divisor(torch.tensor(0.9))
    z = torch.round(m.h_a(y))
    h = m.h_s(z)
    q, s, mu = m.prior_fusion(h)
    out = {"g_a": y, "h_s": h, "prior_fusion": torch.cat([q, s, mu], 1),
           "spatial_prior": m.dual_prior.net(torch.cat([y, mu, s, q], 1)), "g_s": m.g_s(y)}
torch.save(out, sys.argv[3])
"""

CODEC = MODEL + """
import numpy as np
from PIL import Image
# A fixed count: the codec's own thread policy (evc.threads) would otherwise choose it.
codec = evc.Codec(model(), sys.argv[2], device="cpu", threads=int(sys.argv[1]))
if sys.argv[3] == "encode":
    result = codec.encode(Image.open(sys.argv[4]).convert("RGB"), 0.5)
    open(sys.argv[5], "wb").write(result.data)
    np.save(sys.argv[6], np.asarray(result.reconstruction))
else:
    decoded = np.asarray(codec.decompress(open(sys.argv[5], "rb").read())).astype(int)
    reference = np.load(sys.argv[6]).astype(int)
    print(int((decoded != reference).sum()), decoded.size, int(np.abs(decoded - reference).max()))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="EVC-LL")
    parser.add_argument("--weights", default=None, help="trained weights (file or folder) instead of seeded random ones")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 3, 4, 8, 16])
    args = parser.parse_args()
    weights = args.weights or "-"
    if args.weights:  # the name from the files' metadata: the children load the weights themselves
        from evc.models.registry import get_spec
        from evc.models.weights import MODEL_KEY, read_metadata

        args.model = get_spec(read_metadata(Path(args.weights))[MODEL_KEY]).name
    what = f"weights {args.weights}" if args.weights else "random weights"
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for t in args.threads:
            path = Path(tmp) / f"{t}.pt"
            subprocess.run([sys.executable, "-c", NETWORKS, str(t), args.model, str(path), weights], check=True)
            results[t] = torch.load(path)
        print(f"{args.model}, {what}, a random 768x512 input: largest |difference| to the 2-thread result")
        print(f"{'network':<14}" + "".join(f"{f'{t} thr':>12}" for t in args.threads))
        for name in results[2]:
            diffs = [(results[t][name] - results[2][name]).abs().max().item() for t in args.threads]
            print(f"{name:<14}" + "".join(f"{d:>12.2e}" for d in diffs))

        data, recon = Path(tmp) / "a.evc", Path(tmp) / "recon.npy"
        base = [sys.executable, "-c", CODEC]
        subprocess.run([*base, "2", args.model, "encode", str(KODIM05), str(data), str(recon), weights], check=True)
        print(f"\n{KODIM05.name} encoded with 2 threads; decoded in a new process with:")
        for t in args.threads:
            out = subprocess.run([*base, str(t), args.model, "decode", "-", str(data), str(recon), weights],
                                 capture_output=True, text=True)
            if out.returncode:
                print(f"  {t:>2} threads: refused: {out.stderr.strip().splitlines()[-1]}")
            else:
                differing, total, largest = out.stdout.split()
                print(f"  {t:>2} threads: {differing} of {total} values differ from the encoder's reconstruction "
                      f"(largest difference {largest})")


if __name__ == "__main__":
    main()
