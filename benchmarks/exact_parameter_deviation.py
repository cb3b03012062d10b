"""How far the exact entropy parameters lie from the float32 ones, and how often they pick another table.

    python benchmarks/exact_parameter_deviation.py [--weights PATH] [--model EVC-SS]
                                                 [--images ../shared/data/kodak | validation] [--count 24]

For every image (cropped to a multiple of 64) at each of the model's 4 anchors, the float32 networks and
each exact arithmetic (float64 fixed point, format version 2; int8 products, version 3) compute the
entropy parameters from the same inputs: step 1 (q_step, sigma, mu) from the same rounded hyper-latent,
step 2 (sigma, mu) from the same step-1 reconstruction (the float path's). Prints, per arithmetic, the
largest and the mean absolute difference of each parameter from float32 (sigma and mu in units of
q_step), and the share of coded elements whose Gaussian table (scale index) is the same, or one
apart. The exact paths are what make files decode alike on every device; their distance from float32
is what they cost in rate (benchmarks/exact_rd_cost.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import evc
from evc.entropy.dual_prior import step_one_mask
from evc.entropy.gaussian import scale_index
from evc.shared_data import KODAK_DIR, validation_photo_paths

ARITHMETICS = ("float64", "int8")


def crop64(image: Image.Image) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1], cropped to the largest multiple of 64 (the model needs no padding then)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    h, w = rgb.shape[0] // 64 * 64, rgb.shape[1] // 64 * 64
    return torch.from_numpy(rgb[:h, :w].copy()).permute(2, 0, 1).unsqueeze(0)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="weights folder or file (default: the shipped ones)")
    parser.add_argument("--model", default="EVC-SS")
    parser.add_argument("--images", default=str(KODAK_DIR), help="a folder of PNGs, or 'validation' (the split)")
    parser.add_argument("--count", type=int, default=24)
    args = parser.parse_args()
    paths = (validation_photo_paths() if args.images == "validation" else sorted(Path(args.images).glob("*.png")))
    paths = paths[: args.count]
    codec = evc.load(args.model, device="cpu", weights=args.weights)
    model = codec.model.eval()
    nets, latent_codec = model.entropy_networks, model.latent_codec
    largest = {a: {"q_step": 0.0, "sigma": 0.0, "mu": 0.0} for a in ARITHMETICS}
    summed = {a: {"q_step": 0.0, "sigma": 0.0, "mu": 0.0} for a in ARITHMETICS}  # for the mean
    same = {a: 0 for a in ARITHMETICS}
    near = {a: 0 for a in ARITHMETICS}  # scale index off by at most one table
    total = 0
    for path in paths:
        y = model.analyse(crop64(Image.open(path)))
        for q_scale in model.rate.anchor_q_scales():
            ys = y / model.rate.divisor(torch.tensor(q_scale))
            z_hat = torch.round(nets.h_a(ys)) + 0.0
            q_step, sigma, mu = latent_codec.params(z_hat)
            mask1 = step_one_mask(*mu.shape[1:], mu.device)
            # The float path's step-1 reconstruction feeds step 2 of every arithmetic: same inputs.
            y_hat1 = torch.where(mask1, torch.round(ys / q_step - mu) + mu, torch.zeros_like(mu))
            mu2, sigma2 = nets.dual_prior.step_two_params(y_hat1, mu, sigma, q_step)
            reference = {"q_step": q_step, "sigma": sigma, "mu": mu}
            table = torch.where(mask1, scale_index(sigma), scale_index(sigma2))
            total += table.numel()
            for arithmetic in ARITHMETICS:
                exact = latent_codec.exact_parameters(arithmetic)
                e_q, e_sigma, e_mu = exact.hyper(z_hat.double())
                e_mu2, e_sigma2 = exact.step_two(y_hat1.double(), mu.double(), sigma.double(), q_step.double())
                pairs = {"q_step": (e_q, None), "sigma": (e_sigma, e_sigma2), "mu": (e_mu, e_mu2)}
                for name, (step1, step2) in pairs.items():
                    diff = (step1 - reference[name].double()).abs()
                    if step2 is not None:  # step 1's elements from step 1, the others from step 2
                        diff = torch.where(mask1, diff, (step2 - {"sigma": sigma2, "mu": mu2}[name].double()).abs())
                    largest[arithmetic][name] = max(largest[arithmetic][name], float(diff.max()))
                    summed[arithmetic][name] += float(diff.sum())
                e_table = torch.where(mask1, scale_index(e_sigma), scale_index(e_sigma2))
                same[arithmetic] += int((e_table == table).sum())
                near[arithmetic] += int(((e_table - table).abs() <= 1).sum())
    weights = args.weights or f"the shipped {args.model}"
    print(f"{args.model} ({weights}), {len(paths)} images x {len(model.rate.anchor_q_scales())} anchors, "
          f"{total:,} coded latent elements, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("|q - float32| for q_step, sigma and mu, largest / mean over all coded elements:")
    print("| arithmetic | q_step | sigma | mu | same scale index | scale index within 1 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for arithmetic in ARITHMETICS:
        cells = " | ".join(f"{largest[arithmetic][n]:.2e} / {summed[arithmetic][n] / total:.2e}"
                           for n in ("q_step", "sigma", "mu"))
        print(f"| {arithmetic} | {cells} | {100 * same[arithmetic] / total:.3f} % "
              f"| {100 * near[arithmetic] / total:.3f} % |")


if __name__ == "__main__":
    main()
