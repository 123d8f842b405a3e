#!/usr/bin/python3
"""Runs Tide's optimizer benchmarks and torch.optim on the same parameter
shapes, in one run, and prints a Markdown table of times and ratios.

Usage: bench/compare_optim.py BUILD_DIR [--cpu-time]   (needs /usr/bin/python3
with Debian's python3-torch; --cpu-time compares process CPU time instead of
wall time, for a loaded machine). PyTorch is timed with 1 and 2 threads, with its default
implementation (on CPU, the single-tensor for-loop; PyTorch >= 2.0 only picks
foreach by default on CUDA) and with foreach=True; the best time of each is
used. Ratio = PyTorch time / Tide time (> 1: Tide is faster).
"""
import json
import os
import subprocess
import sys
import time

from openblas_core import OPENBLAS_CORE  # before torch: see openblas_core.py
import torch

TORCHCFM = [(64, 3), (64,), (64, 64), (64,), (64, 64), (64,), (2, 64), (2,)]
MLP_1M = [(500, 500), (500,)] * 4
CASES = [
    ("adam/torchcfm_8706", torch.optim.Adam, {}, TORCHCFM),
    ("adam/mlp_1M", torch.optim.Adam, {}, MLP_1M),
    ("adamw/torchcfm_8706", torch.optim.AdamW, {}, TORCHCFM),
    ("adamw/mlp_1M", torch.optim.AdamW, {}, MLP_1M),
    ("sgd_momentum/torchcfm_8706", torch.optim.SGD, dict(lr=1e-3, momentum=0.9), TORCHCFM),
    ("sgd_momentum/mlp_1M", torch.optim.SGD, dict(lr=1e-3, momentum=0.9), MLP_1M),
]


def tide_results(build_dir, clock):
    exe = os.path.join(build_dir, "bench", "tide_bench_optim")
    out = subprocess.run([exe, "--benchmark_format=json", "--benchmark_min_time=0.3",
                          "--benchmark_repetitions=5", "--benchmark_report_aggregates_only=true"],
                         check=True, capture_output=True, text=True).stdout
    results = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        results[b["run_name"]] = b[clock] * scale
    return results


def time_torch(fn, min_time=0.3, repeats=5, clock=time.perf_counter):
    """Median over repeats of the mean time per call, in seconds."""
    fn()
    n = 1
    while True:
        t0 = clock()
        for _ in range(n):
            fn()
        dt = clock() - t0
        if dt > min_time / 4:
            break
        n *= 4
    n = max(1, int(n * min_time / dt))
    times = []
    for _ in range(repeats):
        t0 = clock()
        for _ in range(n):
            fn()
        times.append((clock() - t0) / n)
    return sorted(times)[len(times) // 2]


def torch_step(optimizer, options, shapes, foreach):
    gen = torch.Generator().manual_seed(0)
    params = []
    for s in shapes:
        p = torch.randn(s, generator=gen).requires_grad_(True)
        p.grad = torch.randn(s, generator=gen) * 1e-2
        params.append(p)
    opt = optimizer(params, foreach=foreach, **options)
    return opt.step


def fmt_time(s):
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    build_dir = args[0] if args else "build"
    if "--cpu-time" in sys.argv:
        # Process CPU time, PyTorch on 1 thread (Tide's optimizer loop is single
        # threaded): a fairer measure than wall time on a loaded machine.
        tide = tide_results(build_dir, "cpu_time")
        thread_counts, clock, what = (1,), time.process_time, "CPU time, PyTorch on 1 thread"
    else:
        tide = tide_results(build_dir, "real_time")
        thread_counts, clock, what = (1, 2), time.perf_counter, "wall time, PyTorch best of 1 and 2 threads"
    best = {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for name, optimizer, options, shapes in CASES:
            for foreach in (None, True):
                t = time_torch(torch_step(optimizer, options, shapes, foreach), clock=clock)
                key = (name, foreach)
                best[key] = min(best.get(key, float("inf")), t)

    print(f"OpenBLAS kernel for PyTorch: {OPENBLAS_CORE or 'auto'}")
    print(f"PyTorch {torch.__version__} vs Tide ({what}), {os.cpu_count()} cores, float32; "
          "ratio = PyTorch time / Tide time (> 1: Tide is faster)\n")
    print("| one step | params | Tide | PyTorch default | ratio | PyTorch foreach | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, _, _, shapes in CASES:
        n = sum(torch.Size(s).numel() for s in shapes)
        t = tide[name]
        d, f = best[(name, None)], best[(name, True)]
        print(f"| {name.split('/')[0]} | {n} | {fmt_time(t)} | {fmt_time(d)} | {d / t:.2f}x "
              f"| {fmt_time(f)} | {f / t:.2f}x |")


if __name__ == "__main__":
    main()
