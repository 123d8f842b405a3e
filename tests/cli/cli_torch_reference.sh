#!/usr/bin/env bash
# `tide sample` and `tide loglik --arch mlp` on a torchcfm MLP state dict
# written by PyTorch, against the same computation in PyTorch (float64): the
# Euler flow x <- x + h v(x, t), and the log-likelihood by Euler steps from
# t = 1 down to 0 on (x, l) with dl/dt = div v, the divergence taken the way
# PyTorch users write it, one autograd.grad per dimension. The model is
# random (torch.manual_seed(0)); nothing is stored: both sides run here.
#
# Skipped (exit 77) when /usr/bin/python3 lacks torch, numpy or safetensors
# (Debian: python3-torch, python3-numpy; see scripts/setup.sh --bench).
source "$(dirname "$0")/common.bash" "$@"

PY=/usr/bin/python3
if ! "$PY" -c "import torch, numpy, safetensors" 2>/dev/null; then
  echo "skipped: $PY cannot import torch, numpy and safetensors"
  exit 77
fi

"$PY" - <<'PYEOF' || exit 1
import numpy as np
import torch
from safetensors.torch import save_file

torch.manual_seed(0)
d, w, steps = 2, 64, 10
layers = [torch.nn.Linear(d + 1, w)]
for _ in range(2):
    layers += [torch.nn.SELU(), torch.nn.Linear(w, w)]
layers += [torch.nn.SELU(), torch.nn.Linear(w, d)]
net = torch.nn.Sequential(*layers)
save_file({"net." + k: v.contiguous() for k, v in net.state_dict().items()},
          "torch_mlp.safetensors", metadata={"format": "pt"})
net = net.double()

def v(x, t):
    return net(torch.cat([x, torch.full((x.shape[0], 1), t, dtype=x.dtype)], 1))

x0 = torch.randn(6, d, dtype=torch.float64)
np.save("x0.npy", x0.numpy())
h = 1.0 / steps
with torch.no_grad():
    x = x0.clone()
    for k in range(steps):
        x = x + h * v(x, k * h)
np.save("x1_ref.npy", x.numpy())

x1 = torch.randn(6, d, dtype=torch.float64) * 2
np.save("data.npy", x1.numpy())
x, l = x1.clone(), torch.zeros(6, dtype=torch.float64)
for k in range(steps):
    t = 1.0 - k * h
    xr = x.detach().requires_grad_(True)
    out = v(xr, t)
    div = sum(torch.autograd.grad(out[:, i].sum(), xr, retain_graph=True)[0][:, i]
              for i in range(d))
    x, l = (x - h * out).detach(), (l - h * div).detach()
log_p0 = -0.5 * (x ** 2).sum(1) - 0.5 * d * np.log(2 * np.pi)
np.save("logp_ref.npy", (log_p0 + l).numpy())
print("torch", torch.__version__, "numpy", np.__version__)
PYEOF

ARCH=(--model torch_mlp.safetensors --arch mlp --dim 2 --width 64 --hidden-layers 3
  --activation selu --solver euler --steps 10 --dtype float64)
expect_ok sample sample "${ARCH[@]}" --noise x0.npy --out x1.npy
expect_ok loglik loglik "${ARCH[@]}" --data data.npy --out logp.npy

compare() {  # NAME ACTUAL REFERENCE TOLERANCE
  if "$PY" -c "
import numpy as np, sys
a, b = np.load('$2'), np.load('$3')
err = np.abs(a - b).max() if a.shape == b.shape else np.inf
print('$1: shapes', a.shape, b.shape, 'max abs difference', err)
sys.exit(0 if err <= $4 else 1)"; then
    pass
  else
    failed "$1 differs from PyTorch"
  fi
}
compare sample x1.npy x1_ref.npy 1e-12
compare loglik logp.npy logp_ref.npy 1e-10

finish
