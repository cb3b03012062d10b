"""Speed of the entropy-parameter networks: float32 vs the two exact arithmetics, float64 fixed point
(evc.nn.exact, format version 2) and 8-bit integer products (evc.nn.exact_int8, version 3).

    python benchmarks/exact_speed.py [--model EVC-SS] [--threads 1 2] [--repeats 3] [--device cpu]
                                     [--weights random|shipped] [--sizes 768x512 1920x1088]

Times h_s + prior fusion ("hyper") and the dual prior's step-2 network ("step 2") on random integer
hyper-latents of a 768x512 and a 1920x1088 image (seeded random weights: the network sizes, not the
weights, set the cost), with each CPU thread count. Prints the median of the repeats in milliseconds,
and the weight conversions' one-off cost. --weights shipped: the shipped weights instead (the int8
arithmetic's weight bits depend on them; its speed does not).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import evc
from evc.entropy.dual_prior import step_one_mask
from evc.entropy.exact_parameters import ExactEntropyParameters

SIZES = ((768, 512), (1920, 1088))


def median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()  # warm-up: allocator, thread pool, kernels
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="EVC-SS")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", choices=["random", "shipped"], default="random")
    parser.add_argument("--sizes", nargs="+", default=[f"{w}x{h}" for w, h in SIZES], help="WIDTHxHEIGHT ...")
    args = parser.parse_args()
    device = torch.device(args.device)

    if args.weights == "shipped":
        model = evc.load(args.model, device=args.device).model
    else:
        model = evc.create_model(args.model, seed=0).eval().to(device)
    arithmetics, convert_ms = {}, {}
    for name in ("float64", "int8"):
        start = time.perf_counter()
        arithmetics[name] = ExactEntropyParameters(model.entropy_networks, name)
        convert_ms[name] = 1e3 * (time.perf_counter() - start)
    exact = arithmetics["float64"]
    g = torch.Generator().manual_seed(0)

    header = (f"{'image':>10} {'thr':>3} | {'f32 hyper':>9} {'f32 step2':>9} {'f32 total':>9} | "
              f"{'f64 hyper':>9} {'f64 step2':>9} {'f64 total':>9} | {'i8 hyper':>9} {'i8 step2':>9} "
              f"{'i8 total':>9} | {'f64/f32':>7} {'i8/f32':>6} {'f64/i8':>6}")
    conversions = ", ".join(f"{name} {ms:.0f} ms" for name, ms in convert_ms.items())
    print(f"{args.model} ({args.weights} weights), {device}, times in ms (median of {args.repeats}); "
          f"weight conversion {conversions}")
    print(header)
    print("-" * len(header))
    for width, height in (tuple(int(v) for v in size.split("x")) for size in args.sizes):
        z = torch.randint(-6, 7, (1, 192, height // 64, width // 64), generator=g).float().to(device)
        with torch.no_grad():
            q_step, sigma, mu = exact.hyper(z)
            c, h, w = mu.shape[1:]
            symbols = torch.randint(-4, 5, mu.shape, generator=g).to(device, torch.float64)
            y1 = torch.where(step_one_mask(c, h, w, device), symbols + mu, torch.zeros_like(mu))
            inputs32 = [t.float() for t in (y1, mu, sigma, q_step)]
        for threads in args.threads if device.type == "cpu" else [torch.get_num_threads()]:
            torch.set_num_threads(threads)
            with torch.no_grad():
                f_hyper = median_ms(lambda: model.latent_codec.params(z), args.repeats, device)
                f_step2 = median_ms(lambda: model.dual_prior.step_two_params(*inputs32), args.repeats, device)
            cells, totals = [], []
            for fixed in arithmetics.values():
                e_hyper = median_ms(lambda: fixed.hyper(z), args.repeats, device)
                e_step2 = median_ms(lambda: fixed.step_two(y1, mu, sigma, q_step), args.repeats, device)
                cells.append(f"{e_hyper:>9.1f} {e_step2:>9.1f} {e_hyper + e_step2:>9.1f}")
                totals.append(e_hyper + e_step2)
            f_total = f_hyper + f_step2
            print(f"{f'{width}x{height}':>10} {threads:>3} | {f_hyper:>9.1f} {f_step2:>9.1f} {f_total:>9.1f} | "
                  + " | ".join(cells)
                  + f" | {totals[0] / f_total:>7.2f} {totals[1] / f_total:>6.2f} {totals[0] / totals[1]:>6.2f}")


if __name__ == "__main__":
    main()
