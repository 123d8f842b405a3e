#!/usr/bin/python3
"""Runs Tide's flow benchmarks (bench/bench_flow.cpp) and the same cases written
the way PyTorch users write them, on this machine, in one run, and prints one
Markdown table: time (or steps/s), ratio, and each side's achieved GFLOP/s as a
percentage of the machine's FP32 FMA peak (measured by bench/peak_flops.cpp).

Usage: bench/compare_flow.py BUILD_DIR [--quick] [--filter TEXT]
  (needs /usr/bin/python3 with Debian's python3-torch and numpy; install
  libopenblas0-openmp so PyTorch does not fall back to the reference BLAS).
  --quick: one timed repetition per case, to check that everything runs.
  --filter TEXT: only the cases whose name contains TEXT (e.g. "train", "d2_").

The PyTorch side:
  - the torchcfm MLP (a module with `net` = nn.Sequential of Linear and SELU),
    torch.optim.Adam, torchcfm's ConditionalFlowMatcher(sigma=0) step written
    inline (t ~ U[0, 1), eps drawn as torchcfm does, x_t, u_t = x1 - x0);
  - sampling: a hand-written RK4 loop under torch.no_grad();
  - exact log-likelihood: RK4 over the augmented state (x, l) from t = 1 to 0,
    the divergence from one torch.autograd.grad call per dimension (FFJORD's
    way, retain_graph between the calls, create_graph=False);
  - Hutchinson: autograd.grad of (v * eps).sum(), one call per probe, with
    Rademacher probes fixed over the solve.
Both sides run with 1 and 2 threads (Tide through TIDE_NUM_THREADS) and each
side's faster time is taken, case by case. The sampling and likelihood cases
run on the weights and points Tide used (written by `tide_bench_flow --dump`),
so the script also checks that both sides compute the same numbers.
"""
import argparse
import json
import math
import os
import subprocess
import tempfile
import time

import numpy as np
from openblas_core import OPENBLAS_CORE  # before torch: see openblas_core.py
import torch

# Cases in table order: (name, label). Names are shared with bench_flow.cpp.
CASES = [
    ("train/w64_b256", "CFM training, width 64, batch 256"),
    ("train/w256_b1024", "CFM training, width 256, batch 1024"),
    ("sample/w64_n10000_rk4_100", "sampling 10,000 points, RK4 100 steps, width 64"),
    ("loglik/d2_w64_f32_exact", "exact log-lik., 1,000 points, d=2, width 64, f32"),
    ("loglik/d16_w256_f32_exact", "exact log-lik., 1,000 points, d=16, width 256, f32"),
    ("loglik/d2_w64_f64_exact", "exact log-lik., d=2, width 64, float64"),
    ("loglik/d2_w64_f32_hutch1", "Hutchinson log-lik., d=2, width 64, K=1"),
    ("loglik/d2_w64_f32_hutch4", "Hutchinson log-lik., d=2, width 64, K=4"),
]
RK4_STEPS = 100
# The PyTorch d = 16 exact likelihood takes ~13 s per solve: time this many of
# its 100 RK4 steps and extrapolate (every step costs the same).
D16_TIMED_STEPS = 10
# ... and check its numbers against Tide's on this many of the points.
D16_CHECKED_POINTS = 50


# --- Tide -------------------------------------------------------------------

def tide_results(build_dir, dump_dir, quick, name_filter):
    """Runs tide_bench_flow with 1 and 2 threads and keeps each case's faster
    run (as "threads" in the case). The second run also writes the dump and
    measures the peak (which always uses every core)."""
    exe = os.path.join(build_dir, "bench", "tide_bench_flow")
    merged = None
    for threads in (1, 2):
        args = [exe] + (["--quick"] if quick else [])
        args += ["--filter", name_filter] if name_filter else []
        args += ["--dump", dump_dir] if threads == 2 else ["--no-peak"]
        env = dict(os.environ, TIDE_NUM_THREADS=str(threads))
        out = json.loads(subprocess.run(args, check=True, capture_output=True, text=True,
                                        env=env).stdout)
        for c in out["cases"]:
            c["threads"] = threads
        if merged is None:
            merged = out
            continue
        merged["peak_gflops"], merged["vector_bits"] = out["peak_gflops"], out["vector_bits"]
        faster = {c["name"]: c for c in out["cases"]}
        merged["cases"] = [faster[c["name"]] if faster[c["name"]]["seconds"] < c["seconds"] else c
                           for c in merged["cases"]]
    return merged


# --- PyTorch: the model and the data -------------------------------------------

class MLP(torch.nn.Module):
    """torchcfm.models.MLP(dim, w=width, time_varying=True)."""

    def __init__(self, dim, width):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim + 1, width), torch.nn.SELU(),
            torch.nn.Linear(width, width), torch.nn.SELU(),
            torch.nn.Linear(width, width), torch.nn.SELU(),
            torch.nn.Linear(width, dim))

    def forward(self, x):
        return self.net(x)


def load_tide_weights(model, case_dir):
    """Tide's parameter names are torchcfm's ("net.0.weight", ...)."""
    with torch.no_grad():
        for name, p in model.state_dict().items():
            p.copy_(torch.from_numpy(np.load(os.path.join(case_dir, name + ".npy"))))
    return model


def load_array(case_dir, name):
    return torch.from_numpy(np.load(os.path.join(case_dir, name + ".npy")))


_S = 1 / math.sqrt(2)
_CENTERS = 4 * torch.tensor([(1, 0), (-1, 0), (0, 1), (0, -1),
                             (_S, _S), (_S, -_S), (-_S, _S), (-_S, -_S)], dtype=torch.float32)


def sample_8gaussians(n):
    """FFJORD's 8gaussians (what Tide's "8gaussians" draws), vectorised."""
    return (_CENTERS[torch.randint(8, (n,))] + 0.5 * torch.randn(n, 2)) / 1.414


def velocity(model, t, x):
    """The model input is x with t appended as the last column."""
    return model(torch.cat([x, torch.full((x.shape[0], 1), t, dtype=x.dtype)], dim=-1))


# --- PyTorch: training ------------------------------------------------------------

def make_trainer(width, batch):
    model = MLP(2, width)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train(steps):
        total = 0.0
        for _ in range(steps):
            optimizer.zero_grad()
            x0 = torch.randn(batch, 2)
            x1 = sample_8gaussians(batch)
            # torchcfm ConditionalFlowMatcher(sigma=0).sample_location_and_conditional_flow
            t = torch.rand(x0.shape[0]).type_as(x0)
            eps = torch.randn_like(x0)
            t_ = t.reshape(-1, 1)
            xt = t_ * x1 + (1 - t_) * x0 + 0.0 * eps
            ut = x1 - x0
            vt = model(torch.cat([xt, t[:, None]], dim=-1))
            loss = torch.mean((vt - ut) ** 2)
            loss.backward()
            optimizer.step()
            total += loss.item()
        return total / steps
    return train


# --- PyTorch: ODE integration ---------------------------------------------------------

def rk4(f, y, t0, t1, steps):
    """Classic RK4 with `steps` equal steps on a tuple of tensors."""
    h = (t1 - t0) / steps

    def axpy(y, k, s):
        return tuple(a + s * b for a, b in zip(y, k))
    for i in range(steps):
        t = t0 + i * h
        k1 = f(t, y)
        k2 = f(t + h / 2, axpy(y, k1, h / 2))
        k3 = f(t + h / 2, axpy(y, k2, h / 2))
        k4 = f(t + h, axpy(y, k3, h))
        y = tuple(a + h / 6 * (b1 + 2 * b2 + 2 * b3 + b4)
                  for a, b1, b2, b3, b4 in zip(y, k1, k2, k3, k4))
    return y


def sample(model, x0, steps):
    with torch.no_grad():
        return rk4(lambda t, y: (velocity(model, t, y[0]),), (x0,), 0.0, 1.0, steps)[0]


def exact_dynamics(model):
    """d/dt (x, l) = (v, div v), the divergence one autograd.grad per dimension."""
    def f(t, y):
        with torch.enable_grad():
            x = y[0].detach().requires_grad_(True)
            v = velocity(model, t, x)
            d = x.shape[1]
            div = torch.zeros(x.shape[0], dtype=x.dtype)
            for i in range(d):
                div += torch.autograd.grad(v[:, i].sum(), x, retain_graph=i < d - 1)[0][:, i]
        return v.detach(), div
    return f


def hutchinson_dynamics(model, probes):
    """The mean over the probes [K, B, d] of eps^T (dv/dx) eps."""
    def f(t, y):
        with torch.enable_grad():
            x = y[0].detach().requires_grad_(True)
            v = velocity(model, t, x)
            k = probes.shape[0]
            div = torch.zeros(x.shape[0], dtype=x.dtype)
            for j in range(k):
                g = torch.autograd.grad((v * probes[j]).sum(), x, retain_graph=j < k - 1)[0]
                div += (g * probes[j]).sum(dim=1)
        return v.detach(), div / k
    return f


def log_likelihood(dynamics, x1, steps, t_end=0.0):
    """log p1(x1) = log N(x(0); 0, I) + l(0), integrating (x, l) from t = 1 to 0
    with l(1) = 0 and dl/dt = div v. With t_end > 0 (timing a part of the
    solve only) the result is not a log-likelihood."""
    x, l = rk4(dynamics, (x1, torch.zeros(x1.shape[0], dtype=x1.dtype)), 1.0, t_end, steps)
    d = x.shape[1]
    log_p0 = -0.5 * (x.double() ** 2).sum(dim=1) - 0.5 * d * math.log(2 * math.pi)
    return log_p0 + l.double()


# --- timing ------------------------------------------------------------------------------

def time_fn(fn, units, min_reps, min_time, quick, warmup=None):
    """Median time per unit over timed runs, after one untimed warm-up run."""
    (warmup or fn)()
    times = []
    start = time.perf_counter()
    while len(times) < (1 if quick else min_reps) or (
            not quick and time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) / units)
    return sorted(times)[len(times) // 2]


def torch_cases(dump_dir, names):
    """The cases in `names`, each a dict: run() does `units` steps or one solve
    (after warmup()), `out` holds the last run's results for the checks."""
    cases = {}
    for name, width, batch, steps in (("train/w64_b256", 64, 256, 200),
                                      ("train/w256_b1024", 256, 1024, 20)):
        if name not in names:
            continue
        train = make_trainer(width, batch)
        out = {}

        def run(train=train, steps=steps, out=out):
            out["final_loss"] = train(steps)
        cases[name] = dict(run=run, units=steps, warmup=lambda train=train: train(5),
                           min_reps=3, note="", out=out)

    name = "sample/w64_n10000_rk4_100"
    if name in names:
        case_dir = os.path.join(dump_dir, name.replace("/", "_"))
        model = load_tide_weights(MLP(2, 64), case_dir).eval()
        x0 = load_array(case_dir, "x0")
        out = {}

        def run_sample(model=model, x0=x0, out=out):
            out["x1"] = sample(model, x0, RK4_STEPS)
        cases[name] = dict(run=run_sample, units=1, warmup=lambda: sample(model, x0, 2),
                           min_reps=3, note="", out=out, case_dir=case_dir)

    for name, _ in CASES:
        if not name.startswith("loglik/") or name not in names:
            continue
        d = 16 if "d16" in name else 2
        width = 256 if "w256" in name else 64
        dtype = torch.float64 if "f64" in name else torch.float32
        case_dir = os.path.join(dump_dir, name.replace("/", "_"))
        model = load_tide_weights(MLP(d, width), case_dir).to(dtype).eval()
        x1 = load_array(case_dir, "x1")
        if "hutch" in name:
            k = int(name[-1])
            gen = torch.Generator().manual_seed(6)
            probes = (torch.randint(0, 2, (k, x1.shape[0], d), generator=gen) * 2 - 1).to(dtype)
            dynamics = hutchinson_dynamics(model, probes)
        else:
            dynamics = exact_dynamics(model)
        out = {}
        if d == 16:
            t_end = 1.0 - D16_TIMED_STEPS / RK4_STEPS

            def run(dynamics=dynamics, x1=x1, t_end=t_end):
                log_likelihood(dynamics, x1, D16_TIMED_STEPS, t_end)
            units = D16_TIMED_STEPS / RK4_STEPS  # a fraction of the solve
            note = f"timed {D16_TIMED_STEPS} of {RK4_STEPS} steps, x{RK4_STEPS // D16_TIMED_STEPS}"
        else:
            def run(dynamics=dynamics, x1=x1, out=out):
                out["log_p"] = log_likelihood(dynamics, x1, RK4_STEPS)
            units = 1
            note = ""
        cases[name] = dict(run=run, units=units,
                           warmup=lambda dynamics=dynamics, x1=x1: log_likelihood(dynamics, x1, 1,
                                                                                  0.99),
                           min_reps=3 if d == 2 else 2, note=note, out=out,
                           dynamics=dynamics, x1=x1, case_dir=case_dir)
    return cases


# --- the report -------------------------------------------------------------------------

def fmt_seconds(s):
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def checks(tide, cases):
    """Lines comparing the two sides' numbers."""
    lines = []
    by_name = {c["name"]: c for c in tide["cases"]}
    for name in ("train/w64_b256", "train/w256_b1024"):
        if name not in cases:
            continue
        lines.append(f"- {name}: mean loss of the last timed run: Tide "
                     f"{by_name[name]['checks']['final_loss']:.4f}, PyTorch "
                     f"{cases[name]['out']['final_loss']:.4f} (different random streams; both "
                     "should be finite and similar)")
    name = "sample/w64_n10000_rk4_100"
    if name in cases:
        tide_x1 = load_array(cases[name]["case_dir"], "x1").double()
        diff = (cases[name]["out"]["x1"].double() - tide_x1).abs().max().item()
        lines.append(f"- {name}: same weights and x0; max |x1 Tide - x1 PyTorch| = {diff:.2e}")
    exact_means = {}
    for name, _ in CASES:
        if not name.startswith("loglik/") or name not in cases:
            continue
        c = cases[name]
        tide_lp = load_array(c["case_dir"], "log_p").double()
        if "d16" in name:
            # Full solve on the first points only (rows are independent).
            n = D16_CHECKED_POINTS
            torch_lp = log_likelihood(c["dynamics"], c["x1"][:n], RK4_STEPS)
            tide_lp = tide_lp[:n]
            scope = f"first {n} points"
        else:
            torch_lp = c["out"]["log_p"]
            scope = f"{tide_lp.shape[0]} points"
        finite = bool(torch.isfinite(tide_lp).all() and torch.isfinite(torch_lp).all())
        if "hutch" in name:
            # Different probes on each side: compare the means with the exact one.
            exact = exact_means.get("d2_f32", float("nan"))
            lines.append(f"- {name}: mean log p: Tide {tide_lp.mean():.4f}, PyTorch "
                         f"{torch_lp.mean():.4f}, exact {exact:.4f} "
                         f"(unbiased estimates with different probes); finite: {finite}")
        else:
            diff = (tide_lp - torch_lp).abs().max().item()
            if name == "loglik/d2_w64_f32_exact":
                exact_means["d2_f32"] = tide_lp.mean().item()
            lines.append(f"- {name}: same weights and points ({scope}); max |log p Tide - "
                         f"log p PyTorch| = {diff:.2e}, mean log p {tide_lp.mean():.4f}; "
                         f"finite: {finite}")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("build_dir", nargs="?", default="build")
    parser.add_argument("--quick", action="store_true",
                        help="one timed repetition per case (checks that everything runs)")
    parser.add_argument("--filter", default="", help="only the cases whose name contains this")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tide_bench_flow_") as dump_dir:
        tide = tide_results(args.build_dir, dump_dir, args.quick, args.filter)
        cases = torch_cases(dump_dir, {c["name"] for c in tide["cases"]})
        best = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for name, c in cases.items():
                t = time_fn(c["run"], c["units"], c["min_reps"], 1.0, args.quick, c["warmup"])
                if name not in best or t < best[name][0]:
                    best[name] = (t, threads)
        check_lines = checks(tide, cases)

    peak = tide["peak_gflops"]
    print(f"OpenBLAS kernel for PyTorch: {OPENBLAS_CORE or 'auto'}")
    print(f"Tide vs PyTorch {torch.__version__}, each the faster of 1 and 2 threads (shown as "
          f"'N thr'), {os.cpu_count()} cores. Measured FP32 FMA peak: "
          f"{peak:.0f} GFLOP/s ({tide['vector_bits']}-bit FMA loop on all cores).\n")
    print("| case | Tide | PyTorch | ratio | Tide % of peak | PyTorch % of peak |")
    print("|---|---|---|---|---|---|")
    by_name = {c["name"]: c for c in tide["cases"]}
    for name, label in CASES:
        if name not in by_name:
            continue
        r = by_name[name]
        t_tide = r["seconds"]
        t_torch, torch_threads = best[name]
        flops = r["flops"]
        if r["unit"] == "step":
            tide_cell = f"{1 / t_tide:,.0f} steps/s"
            torch_cell = f"{1 / t_torch:,.0f} steps/s"
        else:
            tide_cell = fmt_seconds(t_tide)
            torch_cell = fmt_seconds(t_torch)
        tide_cell += f" ({r['threads']} thr)"
        torch_cell += f" ({torch_threads} thr)"
        if cases[name]["note"]:
            torch_cell += f" [{cases[name]['note']}]"
        tide_peak = 100 * flops / t_tide / 1e9 / peak
        torch_peak = 100 * flops / t_torch / 1e9 / peak
        print(f"| {label} | {tide_cell} | {torch_cell} | {t_torch / t_tide:.2f}x | "
              f"{tide_peak:.1f}% | {torch_peak:.1f}% |")
    print("\nratio = Tide speed / PyTorch speed (> 1: Tide is faster). Times are medians of the "
          "timed runs. % of peak = model FLOPs / time / peak, counting matrix products only "
          "(2*M*N*K per Linear): training = forward + weight gradients + input gradients (not "
          "the first layer's); sampling = 4 forward passes per RK4 step; likelihood = 4 "
          "evaluations per RK4 step, each one forward pass plus one input VJP per divergence "
          "term (d for exact, K for Hutchinson; Tide's replicated batch also repeats the "
          "forward pass d or K times, which is not counted). Tide accumulates the divergence "
          "in float64 (its default); PyTorch in the state's dtype.\n")
    print("Checks:")
    for line in check_lines:
        print(line)
    print(f"\n(total run time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
