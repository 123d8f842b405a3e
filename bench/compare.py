#!/usr/bin/python3
"""Runs Tide's core benchmarks and the same cases in PyTorch, on this machine,
in one run, and prints a Markdown table of times and ratios.

Usage: bench/compare.py BUILD_DIR   (needs /usr/bin/python3 with Debian's
python3-torch; install libopenblas0-openmp so PyTorch does not fall back to the
reference BLAS). PyTorch is timed with 1 and 2 threads and its faster time is
used; Tide is run with TIDE_NUM_THREADS=1 and 2 and its faster time is used too.
"""
import json
import os
import subprocess
import sys
import time

from openblas_core import OPENBLAS_CORE  # before torch: see openblas_core.py
import torch


def tide_results(build_dir, threads):
    exe = os.path.join(build_dir, "bench", "tide_bench_core")
    env = dict(os.environ, TIDE_NUM_THREADS=str(threads))
    out = subprocess.run([exe, "--benchmark_format=json", "--benchmark_min_time=0.3",
                          "--benchmark_repetitions=3", "--benchmark_report_aggregates_only=true"],
                         check=True, capture_output=True, text=True, env=env).stdout
    results = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name = b["run_name"]
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        results[name] = b["real_time"] * scale
    return results


def time_torch(fn, min_time=0.3, repeats=3):
    """Median over repeats of the mean time per call, in seconds."""
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > min_time / 4:
            break
        n *= 4
    n = max(1, int(n * min_time / dt))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n)
    return sorted(times)[len(times) // 2]


def torch_cases():
    cases = {}

    def op_fwd(shape, binary):
        a, b = torch.randn(shape), torch.randn(shape)
        return (lambda: a + b) if binary else (lambda: torch.nn.functional.selu(a))

    def op_fwd_bwd(shape, binary):
        a = torch.randn(shape, requires_grad=True)
        b = torch.randn(shape, requires_grad=True)
        g = torch.ones(shape)

        def step():
            y = a + b if binary else torch.nn.functional.selu(a)
            y.backward(g)
        return step

    for shape, label in (((1,), "1"), ((256, 64), "256x64")):
        cases[f"add_{label}/fwd"] = op_fwd(shape, True)
        cases[f"selu_{label}/fwd"] = op_fwd(shape, False)
        cases[f"add_{label}/fwd+bwd"] = op_fwd_bwd(shape, True)
        cases[f"selu_{label}/fwd+bwd"] = op_fwd_bwd(shape, False)
    for n in (64, 256, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        cases[f"matmul/torch/{n}"] = (lambda a=a, b=b: torch.mm(a, b))
    for width in (64, 256):
        x = torch.randn(256, width, requires_grad=True)
        lin = torch.nn.Linear(width, width)

        def step(x=x, lin=lin):
            torch.nn.functional.silu(lin(x)).sum().backward()
        cases[f"linear_silu_b256/fwd+bwd/{width}"] = step
    return cases


def main():
    build_dir = sys.argv[1] if len(sys.argv) > 1 else "build"
    # Both sides get the faster of 1 and 2 threads, case by case.
    tide = {}
    for threads in (1, 2):
        for name, t in tide_results(build_dir, threads).items():
            tide[name] = min(tide.get(name, float("inf")), t)
    cases = torch_cases()
    torch_best = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, fn in cases.items():
            t = time_torch(fn)
            torch_best[name] = min(torch_best.get(name, float("inf")), t)

    print(f"OpenBLAS kernel for PyTorch: {OPENBLAS_CORE or 'auto'}")
    print(f"PyTorch {torch.__version__} vs Tide, each the best of 1 and 2 threads, "
          f"{os.cpu_count()} cores; ratio = PyTorch time / Tide time (> 1: Tide is faster)\n")
    print("| case | Tide | PyTorch | ratio |")
    print("|---|---|---|---|")

    def fmt_time(s):
        return f"{s * 1e9:.0f} ns" if s < 1e-6 else f"{s * 1e6:.2f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms"

    for name in ("add_1/fwd", "selu_1/fwd", "add_1/fwd+bwd", "selu_1/fwd+bwd",
                 "add_256x64/fwd", "selu_256x64/fwd", "add_256x64/fwd+bwd", "selu_256x64/fwd+bwd",
                 "linear_silu_b256/fwd+bwd/64", "linear_silu_b256/fwd+bwd/256"):
        t, p = tide[name], torch_best[name]
        print(f"| {name} | {fmt_time(t)} | {fmt_time(p)} | {p / t:.2f}x |")
    print("\n| matmul n | Tide GFLOP/s | raw oneDNN GFLOP/s | PyTorch GFLOP/s | Tide / oneDNN |")
    print("|---|---|---|---|---|")
    for n in (64, 256, 1024, 2048):
        flops = 2.0 * n ** 3
        t, o, p = tide[f"matmul/tide/{n}"], tide[f"matmul/onednn/{n}"], torch_best[f"matmul/torch/{n}"]
        print(f"| {n} | {flops / t / 1e9:.1f} | {flops / o / 1e9:.1f} | {flops / p / 1e9:.1f} | {o / t:.2f} |")


if __name__ == "__main__":
    main()
