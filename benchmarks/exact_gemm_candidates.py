"""Candidates for exact entropy parameters at float32-class speed (issue 20, item 1): one GEMM of the
entropy-parameter networks' 1x1 convs, timed in each arithmetic that could carry exact integer sums.

    python benchmarks/exact_gemm_candidates.py [--threads 1] [--repeats 7] [--profile]

--profile first runs the shipped EVC-SS's exact networks (evc.nn.exact: hyper path and the dual prior's
step 2) on the latent of a 768x512 image under torch's profiler and prints the share of their time in
each op. torch's only float64 conv kernel on the CPU, aten::_slow_conv2d_forward, runs both the 1x1
convs (one GEMM each) and the depthwise convs (one small call per channel, hence thousands of calls);
with the 1x1 convs called as matrix products instead (a prototype, 2026-12-03) the GEMMs alone took
about 60 % and the depthwise convs about 6 %. So the arithmetic of those GEMMs decides the speed:
- float64 (today): 28-bit activations x 18-bit weights, exact while every partial sum is below 2**53;
- float32: exact only while partial sums stay below 2**24, i.e. about 7-bit activations x 7-bit weights
  for the 384-768 terms of these convs (shown for its speed: it is the float path's kernel);
- bfloat16: not exact at all; shown because it is the transforms' fast path where the CPU has it;
- int8 x int8 -> int32 (torch._int_mm: VNNI / AMX on x86 CPUs, tensor cores on CUDA): exact for any
  K below 2**31 / 127**2 = 133,000 terms, so its results are the same integers on every device, but it
  needs 8-bit weights and activations, hence entropy networks fine-tuned for them and a new format.
Each line: the shape (output channels x input channels x latent positions) and the median time per
GEMM in ms, and for int8 whether its result equals an int64 reference (exactness on this machine).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

# (out channels, in channels, latent positions): prior fusion / dual prior widths at the latent of a
# 768x512 image (48 x 32 positions) and of a 1920x1088 one (120 x 68).
SHAPES = ((384, 384, 1536), (768, 384, 1536), (384, 384, 8160))


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: packing, thread pool
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def profile_exact_networks() -> None:
    """Share of each op in the exact networks' time, shipped EVC-SS, latent of a 768x512 image."""
    from torch.profiler import ProfilerActivity, profile

    import evc
    from evc.entropy.dual_prior import step_one_mask
    from evc.entropy.exact_parameters import ExactEntropyParameters

    codec = evc.load("EVC-SS", device="cpu")
    exact = ExactEntropyParameters(codec.model.entropy_networks)
    g = torch.Generator().manual_seed(0)
    z = torch.randint(-6, 7, (1, 192, 512 // 64, 768 // 64), generator=g).float()
    with torch.no_grad():
        q_step, sigma, mu = exact.hyper(z)
        symbols = torch.randint(-4, 5, mu.shape, generator=g).to(torch.float64)
        y1 = torch.where(step_one_mask(*mu.shape[1:], torch.device("cpu")), symbols + mu, torch.zeros_like(mu))
        exact.step_two(y1, mu, sigma, q_step)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            exact.hyper(z)
            exact.step_two(y1, mu, sigma, q_step)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"exact networks of the shipped EVC-SS, 768x512: {total / 1e3:.0f} ms of CPU under the profiler")
    for event in events[:6]:
        print(f"  {event.key:32} {100 * event.self_cpu_time_total / total:5.1f} %  ({event.count} calls)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="first, the exact networks' time per op")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.profile:
        profile_exact_networks()
    g = torch.Generator().manual_seed(0)
    print(f"{args.threads} thread(s), median of {args.repeats}, ms per GEMM")
    print(f"{'shape':>16} | {'float64':>8} {'float32':>8} {'bfloat16':>8} {'int8':>8} | int8 exact | float64 / int8")
    for out_c, in_c, positions in SHAPES:
        weight8 = torch.randint(-127, 128, (out_c, in_c), generator=g, dtype=torch.int8)
        act8 = torch.randint(-127, 128, (positions, in_c), generator=g, dtype=torch.int8)
        weight64 = torch.randint(-(2**17), 2**17, (out_c, in_c), generator=g).double()
        act64 = torch.randint(-(2**27), 2**27, (in_c, positions), generator=g).double()
        weight32, act32 = weight64.float(), act64.float()
        weight16, act16 = weight32.bfloat16(), act32.bfloat16()
        weight8_t = weight8.t().contiguous()  # _int_mm: (positions x in) @ (in x out), both row-major
        times = {
            "float64": median_ms(lambda: weight64 @ act64, args.repeats),
            "float32": median_ms(lambda: weight32 @ act32, args.repeats),
            "bfloat16": median_ms(lambda: weight16 @ act16, args.repeats),
            "int8": median_ms(lambda: torch._int_mm(act8, weight8_t), args.repeats),
        }
        exact = torch.equal(torch._int_mm(act8, weight8_t).long(), act8.long() @ weight8_t.long())
        shape = f"{out_c}x{in_c}x{positions}"
        print(f"{shape:>16} | " + " ".join(f"{t:>8.2f}" for t in times.values())
              + f" | {str(exact):>10} | {times['float64'] / times['int8']:.2f}x")


if __name__ == "__main__":
    main()
