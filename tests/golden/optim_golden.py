#!/usr/bin/python3
"""Golden values for Tide's optimizers, from PyTorch.

Writes tests/golden/optim_golden.h (next to this script), which
tests/test_optim.cpp replays:

  * optimizer cases: SGD (plain, momentum, Nesterov, weight decay,
    dampening), Adam (plain, weight decay, amsgrad), AdamW (plain, amsgrad) and
    parameter groups with their own lr and weight decay. Three float64
    parameters are updated for several steps with a fixed gradient sequence
    (written to the header too); one parameter has no gradient on one step, so
    per-parameter step counts matter. The header holds every parameter after
    every step.
  * learning-rate schedules as PyTorch computes them (StepLR,
    CosineAnnealingLR, LinearLR then CosineAnnealingLR via SequentialLR).
  * clip_grad_norm_ on fixed gradients (2-norm and inf-norm).
  * an MLP regression (2 -> 16 -> 16 -> 1, tanh) trained with full-batch MSE
    and Adam(lr=1e-2) for 50 steps in float32 and float64 from the same initial
    weights and data (both written to the header), with the loss at every step.

Run with Debian's PyTorch:  /usr/bin/python3 tests/golden/optim_golden.py
"""

import math
import warnings
import os

import torch

SEED = 1234
NUM_STEPS = 6
PARAM_SHAPES = [[2, 3], [3], [1]]
# (step, param) pairs with no gradient: PyTorch skips that parameter.
MISSING_GRADS = {(3, 2)}

MLP_SEED = 4321
MLP_SIZES = [2, 16, 16, 1]
MLP_SAMPLES = 32
MLP_STEPS = 50
MLP_LR = 1e-2


def fmt_double(x):
    r = repr(float(x))
    if r in ("inf", "-inf", "nan"):
        raise ValueError("non-finite golden value")
    return r


def fmt_list(values):
    return "{" + ", ".join(fmt_double(v) for v in values) + "}"


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


# ---------------------------------------------------------------------------
# Optimizer cases
# ---------------------------------------------------------------------------

CASES = [
    # name, optimizer, options, groups (list of (param indices, overrides)) or None
    ("sgd_plain", "SGD", dict(lr=0.1), None),
    ("sgd_momentum", "SGD", dict(lr=0.1, momentum=0.9), None),
    ("sgd_nesterov", "SGD", dict(lr=0.1, momentum=0.9, nesterov=True), None),
    ("sgd_weight_decay", "SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.05), None),
    ("sgd_dampening", "SGD", dict(lr=0.1, momentum=0.9, dampening=0.3), None),
    ("adam", "Adam", dict(lr=0.01), None),
    ("adam_weight_decay", "Adam", dict(lr=0.01, weight_decay=0.1), None),
    ("adam_betas_eps", "Adam", dict(lr=0.02, betas=(0.8, 0.95), eps=1e-3), None),
    ("adam_amsgrad", "Adam", dict(lr=0.01, amsgrad=True), None),
    ("adamw", "AdamW", dict(lr=0.01, weight_decay=0.1), None),
    ("adamw_amsgrad", "AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True), None),
    ("adam_two_groups", "Adam", dict(lr=0.01),
     [([0], dict()), ([1, 2], dict(lr=0.05, weight_decay=0.2))]),
    ("sgd_two_groups", "SGD", dict(lr=0.1, momentum=0.9),
     [([0, 2], dict(weight_decay=0.1)), ([1], dict(lr=0.02))]),
    ("adamw_two_groups", "AdamW", dict(lr=0.01, weight_decay=0.1),
     [([0], dict(weight_decay=0.0)), ([1, 2], dict(lr=0.03))]),
]

OPTIONS_DEFAULTS = dict(lr=0.0, momentum=0.0, dampening=0.0, weight_decay=None,
                        nesterov=False, beta1=0.9, beta2=0.999, eps=1e-8, amsgrad=False)


def make_problem():
    gen = torch.Generator().manual_seed(SEED)
    init = [torch.randn(s, generator=gen, dtype=torch.float64) for s in PARAM_SHAPES]
    grads = []
    for step in range(NUM_STEPS):
        row = []
        for i, s in enumerate(PARAM_SHAPES):
            g = torch.randn(s, generator=gen, dtype=torch.float64)
            row.append(None if (step, i) in MISSING_GRADS else g)
        grads.append(row)
    return init, grads


def run_case(optimizer, options, groups, init, grads):
    params = [p.clone().requires_grad_(True) for p in init]
    if groups is None:
        spec = [{"params": params}]
    else:
        spec = [dict({"params": [params[i] for i in idx]}, **over) for idx, over in groups]
    opt = getattr(torch.optim, optimizer)(spec, **options)
    history = []
    for step in range(NUM_STEPS):
        for p, g in zip(params, grads[step]):
            p.grad = None if g is None else g.clone()
        opt.step()
        history.append([flat(p) for p in params])
    return history


def emit_cases(out, init, grads):
    out.append("inline const std::vector<Shape> kParamShapes = {")
    for s in PARAM_SHAPES:
        out.append("    {" + ", ".join(str(d) for d in s) + "},")
    out.append("};")
    out.append("inline const std::vector<std::vector<double>> kInitialParams = {")
    for p in init:
        out.append("    " + fmt_list(flat(p)) + ",")
    out.append("};")
    out.append("// kGrads[step][param], flattened; empty = no gradient on that step.")
    out.append("inline const std::vector<std::vector<std::vector<double>>> kGrads = {")
    for row in grads:
        out.append("    {")
        for g in row:
            out.append("        " + ("{}" if g is None else fmt_list(flat(g))) + ",")
        out.append("    },")
    out.append("};")
    out.append("")
    out.append("inline const std::vector<OptimCase> kCases = {")
    for name, optimizer, options, groups in CASES:
        history = run_case(optimizer, options, groups, init, grads)
        o = dict(OPTIONS_DEFAULTS)
        o.update({k: v for k, v in options.items() if k != "betas"})
        if "betas" in options:
            o["beta1"], o["beta2"] = options["betas"]
        if o["weight_decay"] is None:
            o["weight_decay"] = 1e-2 if optimizer == "AdamW" else 0.0
        group_list = groups if groups is not None else [(list(range(len(PARAM_SHAPES))), {})]
        out.append("    {")
        out.append(f'        .name = "{name}",')
        out.append(f'        .optimizer = "{optimizer}",')
        out.append(f"        .lr = {fmt_double(o['lr'])},")
        out.append(f"        .momentum = {fmt_double(o['momentum'])},")
        out.append(f"        .dampening = {fmt_double(o['dampening'])},")
        out.append(f"        .weight_decay = {fmt_double(o['weight_decay'])},")
        out.append(f"        .nesterov = {'true' if o['nesterov'] else 'false'},")
        out.append(f"        .beta1 = {fmt_double(o['beta1'])},")
        out.append(f"        .beta2 = {fmt_double(o['beta2'])},")
        out.append(f"        .eps = {fmt_double(o['eps'])},")
        out.append(f"        .amsgrad = {'true' if o['amsgrad'] else 'false'},")
        out.append("        .groups = {")
        for idx, over in group_list:
            lr = fmt_double(over["lr"]) if "lr" in over else "std::nullopt"
            wd = fmt_double(over["weight_decay"]) if "weight_decay" in over else "std::nullopt"
            out.append("            {.params = {" + ", ".join(str(i) for i in idx) +
                       f"}}, .lr = {lr}, .weight_decay = {wd}}},")
        out.append("        },")
        out.append("        .history = {")
        for step_params in history:
            out.append("            {")
            for p in step_params:
                out.append("                " + fmt_list(p) + ",")
            out.append("            },")
        out.append("        },")
        out.append("    },")
    out.append("};")


# ---------------------------------------------------------------------------
# Schedules and clipping
# ---------------------------------------------------------------------------

SCHEDULE_STEPS = 15
SCHEDULE_BASE_LR = 0.1


def schedule_lrs(make):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=SCHEDULE_BASE_LR)
    sched = make(opt)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(SCHEDULE_STEPS):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def emit_schedules(out):
    S = torch.optim.lr_scheduler
    out.append(f"inline constexpr double kScheduleBaseLr = {fmt_double(SCHEDULE_BASE_LR)};")
    out.append("// The lr after 0, 1, ..., kScheduleSteps scheduler steps.")
    out.append(f"inline constexpr int kScheduleSteps = {SCHEDULE_STEPS};")
    cases = [
        ("kStepLr", "StepLR(step_size=4, gamma=0.5)", lambda o: S.StepLR(o, step_size=4, gamma=0.5)),
        ("kCosineLr", "CosineAnnealingLR(T_max=10, eta_min=0.001)",
         lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.001)),
        ("kWarmupCosineLr",
         "SequentialLR([LinearLR(start_factor=0.25, total_iters=3), "
         "CosineAnnealingLR(T_max=8, eta_min=0.0)], milestones=[3])",
         lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.25, total_iters=3),
                                      S.CosineAnnealingLR(o, T_max=8, eta_min=0.0)],
                                  milestones=[3])),
    ]
    for name, desc, make in cases:
        out.append(f"// torch.optim.lr_scheduler.{desc}")
        out.append(f"inline const std::vector<double> {name} = {fmt_list(schedule_lrs(make))};")


def emit_clip(out):
    gen = torch.Generator().manual_seed(SEED + 1)
    grads = [torch.randn(s, generator=gen, dtype=torch.float64) * 2 for s in PARAM_SHAPES]
    out.append("// clip_grad_norm_ on kClipGrads (one per kParamShapes entry).")
    out.append("inline const std::vector<std::vector<double>> kClipGrads = {")
    for g in grads:
        out.append("    " + fmt_list(flat(g)) + ",")
    out.append("};")
    out.append("struct ClipCase {")
    out.append("  double max_norm, norm_type, total_norm;")
    out.append("  std::vector<std::vector<double>> clipped;")
    out.append("};")
    out.append("inline const std::vector<ClipCase> kClipCases = {")
    for max_norm, norm_type in [(1.0, 2.0), (100.0, 2.0), (0.5, math.inf)]:
        params = [torch.zeros_like(g, requires_grad=True) for g in grads]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
        nt = "std::numeric_limits<double>::infinity()" if math.isinf(norm_type) else fmt_double(norm_type)
        out.append(f"    {{{fmt_double(max_norm)}, {nt}, {fmt_double(total.item())}, {{")
        for p in params:
            out.append("        " + fmt_list(flat(p.grad)) + ",")
        out.append("    }},")
    out.append("};")


# ---------------------------------------------------------------------------
# MLP regression
# ---------------------------------------------------------------------------

def mlp_problem():
    torch.manual_seed(MLP_SEED)
    layers = []
    for i in range(len(MLP_SIZES) - 1):
        layers.append(torch.nn.Linear(MLP_SIZES[i], MLP_SIZES[i + 1]))
        if i < len(MLP_SIZES) - 2:
            layers.append(torch.nn.Tanh())
    model = torch.nn.Sequential(*layers)  # float32, PyTorch's default init
    x = torch.rand(MLP_SAMPLES, MLP_SIZES[0]) * 4 - 2
    y = (torch.sin(x[:, :1] * 1.5) * torch.cos(x[:, 1:]) + 0.25 * x[:, :1] ** 2).float()
    return model, x, y


def train_mlp(model, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=MLP_LR)
    losses = []
    for _ in range(MLP_STEPS):
        opt.zero_grad()
        loss = torch.mean((model(x) - y) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = torch.mean((model(x) - y) ** 2).item()
    return losses, final


def emit_mlp(out):
    import copy
    model32, x, y = mlp_problem()
    model64 = copy.deepcopy(model32).double()
    weights = [(name, flat(p), list(p.shape)) for name, p in model32.named_parameters()]
    losses32, final32 = train_mlp(model32, x, y)
    losses64, final64 = train_mlp(model64, x.double(), y.double())

    out.append(f"inline const std::vector<int64_t> kMlpSizes = {{{', '.join(map(str, MLP_SIZES))}}};")
    out.append(f"inline constexpr int kMlpSteps = {MLP_STEPS};")
    out.append(f"inline constexpr double kMlpLr = {fmt_double(MLP_LR)};")
    out.append("// Initial weights (float32 values, exact in float64), in named_parameters order:")
    out.append("// " + ", ".join(f"{n} {s}" for n, _, s in weights))
    out.append("inline const std::vector<std::vector<double>> kMlpWeights = {")
    for _, values, _ in weights:
        out.append("    " + fmt_list(values) + ",")
    out.append("};")
    out.append(f"// Inputs [{MLP_SAMPLES}, {MLP_SIZES[0]}] and targets [{MLP_SAMPLES}, 1], row-major.")
    out.append(f"inline const std::vector<double> kMlpX = {fmt_list(flat(x))};")
    out.append(f"inline const std::vector<double> kMlpY = {fmt_list(flat(y))};")
    out.append("// Loss before each Adam step, and after the last one.")
    out.append(f"inline const std::vector<double> kMlpLosses32 = {fmt_list(losses32)};")
    out.append(f"inline constexpr double kMlpFinalLoss32 = {fmt_double(final32)};")
    out.append(f"inline const std::vector<double> kMlpLosses64 = {fmt_list(losses64)};")
    out.append(f"inline constexpr double kMlpFinalLoss64 = {fmt_double(final64)};")


def main():
    torch.set_num_threads(1)  # a deterministic reduction order
    # SequentialLR passes an epoch to CosineAnnealingLR.step, which warns.
    warnings.filterwarnings("ignore", category=UserWarning)
    init, grads = make_problem()
    out = [
        "// Generated by tests/golden/optim_golden.py; do not edit.",
        f"// torch {torch.__version__}, seeds {SEED} (optimizer problem, {SEED + 1} for clipping)",
        f"// and {MLP_SEED} (MLP), float64 unless stated.",
        "#pragma once",
        "",
        "#include <cstdint>",
        "#include <limits>",
        "#include <optional>",
        "#include <vector>",
        "",
        "namespace optim_golden {",
        "",
        f'inline constexpr const char* kTorchVersion = "{torch.__version__}";',
        f"inline constexpr int kSeed = {SEED};",
        f"inline constexpr int kMlpSeed = {MLP_SEED};",
        f"inline constexpr int kNumSteps = {NUM_STEPS};",
        "",
        "using Shape = std::vector<int64_t>;",
        "struct Group {",
        "  std::vector<int> params;  // indices into kParamShapes",
        "  std::optional<double> lr, weight_decay;  // unset: the optimizer's option",
        "};",
        "struct OptimCase {",
        "  const char* name;",
        '  const char* optimizer;  // "SGD", "Adam" or "AdamW"',
        "  double lr, momentum, dampening, weight_decay;",
        "  bool nesterov;",
        "  double beta1, beta2, eps;",
        "  bool amsgrad;",
        "  std::vector<Group> groups;",
        "  // history[step][param]: the parameter (flattened) after step + 1 steps.",
        "  std::vector<std::vector<std::vector<double>>> history;",
        "};",
        "",
    ]
    emit_cases(out, init, grads)
    out.append("")
    emit_schedules(out)
    out.append("")
    emit_clip(out)
    out.append("")
    emit_mlp(out)
    out.append("")
    out.append("}  // namespace optim_golden")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_golden.h")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
