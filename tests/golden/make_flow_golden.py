#!/usr/bin/python3
"""Writes the PyTorch reference files for tests/test_flow_train.cpp.

torchcfm's 2-D velocity network (atong01/conditional-flow-matching,
torchcfm/models/models.py, `MLP(dim=2, w=64, time_varying=True)`; the class is
restated below so torchcfm itself need not be installed), initialised by
PyTorch with torch.manual_seed(0):

  tests/data/golden/torchcfm_mlp.safetensors
      model.state_dict() exactly as a PyTorch user saves it
      (safetensors.torch.save_file): "net.0.weight" ... "net.6.bias", float32,
      and no Tide architecture metadata (only the versions and seed below).
  tests/data/golden/torchcfm_mlp_io.safetensors
      "x" [5, 2] and "t" [5] (closed-form values), and the network's outputs
      "v" = model(cat([x, t[:, None]], 1)) computed by PyTorch in float64 from
      the same weights.

Run with Debian's Python (it has torch; safetensors via
`/usr/bin/python3 -m pip install --break-system-packages safetensors`):
    /usr/bin/python3 tests/golden/make_flow_golden.py
"""

import os
import sys

import safetensors
import torch
from safetensors.torch import save_file

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "golden")
SEED = 0


class MLP(torch.nn.Module):
    """torchcfm.models.models.MLP, verbatim in structure."""

    def __init__(self, dim, out_dim=None, w=64, time_varying=False):
        super().__init__()
        self.time_varying = time_varying
        if out_dim is None:
            out_dim = dim
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim + (1 if time_varying else 0), w),
            torch.nn.SELU(),
            torch.nn.Linear(w, w),
            torch.nn.SELU(),
            torch.nn.Linear(w, w),
            torch.nn.SELU(),
            torch.nn.Linear(w, out_dim),
        )

    def forward(self, x):
        return self.net(x)


def main():
    torch.manual_seed(SEED)
    model = MLP(dim=2, w=64, time_varying=True)
    metadata = {
        "generator": "tests/golden/make_flow_golden.py",
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "python": sys.version.split()[0],
        "seed": str(SEED),
    }
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(GOLDEN, "torchcfm_mlp.safetensors"), metadata=metadata)

    # Closed-form inputs: x_i = (0.7 i - 1.3, 1.1 - 0.45 i), t_i = 0.2 i + 0.05.
    i = torch.arange(5, dtype=torch.float64)
    x = torch.stack([0.7 * i - 1.3, 1.1 - 0.45 * i], dim=1)
    t = 0.2 * i + 0.05
    with torch.no_grad():
        v = model.double()(torch.cat([x, t[:, None]], dim=1))
    save_file({"x": x, "t": t, "v": v}, os.path.join(GOLDEN, "torchcfm_mlp_io.safetensors"),
              metadata=metadata)
    print("wrote torchcfm_mlp.safetensors and torchcfm_mlp_io.safetensors to", GOLDEN)


if __name__ == "__main__":
    main()
