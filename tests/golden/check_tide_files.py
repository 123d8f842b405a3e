#!/usr/bin/python3
"""Checks that files written by Tide load in NumPy, safetensors and PyTorch.

Usage: /usr/bin/python3 tests/golden/check_tide_files.py DIR

DIR holds the files written by the C++ test "io: Tide writes the interchange
files that Python checks" (tests/test_io_interop.cpp); CTest runs that test
first, then this script. The expected values restate that test's formulas.
Exits non-zero with a message on the first mismatch.
"""

import math
import os
import struct
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

try:
    import torch
except ImportError:  # BF16 is then checked by its definition instead
    torch = None

checks = 0


def check(condition, message):
    global checks
    checks += 1
    if not condition:
        raise SystemExit(f"check_tide_files: FAILED: {message}")


def equal(actual, expected, name):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    check(actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}")
    check(actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}")
    # Bitwise, so -0.0 and NaN payloads count too.
    check(actual.tobytes() == expected.tobytes(), f"{name}: values {actual} != {expected}")


# The formulas of tests/test_io_interop.cpp.
F32 = (np.arange(6) / 8.0 - 1).astype(np.float32).reshape(2, 3)
F64 = np.arange(4) / 3.0 - 0.5
I64 = np.array([np.iinfo(np.int64).min, -1, np.iinfo(np.int64).max], dtype=np.int64)
BOOL = np.arange(5) % 2 == 0
HALF_SOURCE = np.array(
    [np.float32((k + 1) / 3.0) for k in range(100)]
    + [1e-6, 70000.0, -0.0, 65519.0, 1 + 2.0**-8, 1 + 3 * 2.0**-8, 1 + 2.0**-11, 1 + 3 * 2.0**-11],
    dtype=np.float32,
)
HALF_SOURCE64 = np.array([(k + 1) / 7.0 * 1000 for k in range(100)], dtype=np.float64)


def bf16_value(code):
    """The float value of a bfloat16 code (the top half of a float32)."""
    return struct.unpack("<f", struct.pack("<I", int(code) << 16))[0]


def bf16_is_nearest(code, x):
    """True if bfloat16 `code` is float32 x rounded to nearest, ties to even."""
    x = float(x)
    code = int(code)
    if (code & 0x8000) != (0x8000 if math.copysign(1.0, x) < 0 else 0):
        return False
    mag, ax = code & 0x7FFF, abs(x)
    if mag == 0x7F80:  # infinity: only from half an ulp past the largest finite value
        return ax >= (2 - 2.0**-8) * 2.0**127
    value = bf16_value(mag)
    above = bf16_value(mag + 1)
    below = bf16_value(mag - 1) if mag > 0 else -bf16_value(1)
    err = abs(value - ax)
    if err > abs(above - ax) or err > abs(ax - below):
        return False
    tie = err == abs(above - ax) or err == abs(ax - below)
    return not tie or mag % 2 == 0


def main(folder):
    path = lambda name: os.path.join(folder, name)

    # --- safetensors, through the numpy front end and safe_open ---
    t = load_file(path("tide_dtypes.safetensors"))
    check(sorted(t) == sorted(["f32", "f64", "i64", "bool", "scalar", "empty", "transposed",
                               "net.0.wéight"]), f"tensor names {sorted(t)}")
    equal(t["f32"], F32, "f32")
    equal(t["f64"], F64, "f64")
    equal(t["i64"], I64, "i64")
    equal(t["bool"], BOOL, "bool")
    equal(t["scalar"], np.array(7.25, dtype=np.float32), "scalar")
    equal(t["empty"], np.zeros((0, 4), dtype=np.float32), "empty")
    equal(t["transposed"], np.ascontiguousarray(F32.T), "transposed")
    equal(t["net.0.wéight"], np.arange(3, dtype=np.float64), "net.0.wéight")
    with safe_open(path("tide_dtypes.safetensors"), framework="numpy") as f:
        check(f.metadata() == {"writer": "tide", "ünï": "cødé"}, f"metadata {f.metadata()}")

    # F16: the same bits as NumPy's (correctly rounded) conversions, from
    # float32 and directly from float64.
    h = load_file(path("tide_f16.safetensors"))
    with np.errstate(over="ignore"):  # 70000 rounds to infinity, as intended
        expected16 = HALF_SOURCE.astype(np.float16)
    equal(h["w"], expected16, "f16 from float32")
    equal(h["w64"], HALF_SOURCE64.astype(np.float16), "f16 from float64")

    # BF16: PyTorch's float32 -> bfloat16 rounding, bit for bit.
    with open(path("tide_bf16.safetensors"), "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    check(b'"dtype":"BF16"' in raw[8 : 8 + n], "tide_bf16.safetensors stores BF16")
    bits = np.frombuffer(raw[8 + n :], dtype="<u2")
    check(bits.size == HALF_SOURCE.size, f"bf16 element count {bits.size}")
    if torch is not None:
        from safetensors.torch import load_file as load_torch

        # PyTorch reads every dtype of Tide's files too.
        pt = load_torch(path("tide_dtypes.safetensors"))
        check(pt["i64"].dtype == torch.int64 and pt["bool"].dtype == torch.bool, "torch dtypes")
        equal(pt["f32"].numpy(), F32, "f32 via torch")
        equal(pt["bool"].numpy(), BOOL, "bool via torch")
        equal(pt["i64"].numpy(), I64, "i64 via torch")
        b = load_torch(path("tide_bf16.safetensors"))["w"]
        expected = torch.from_numpy(HALF_SOURCE.copy()).to(torch.bfloat16)
        check(b.dtype == torch.bfloat16, f"bf16 dtype {b.dtype}")
        check(torch.equal(b.view(torch.int16), expected.view(torch.int16)), "bf16 bits vs torch")
    for k, (code, x) in enumerate(zip(bits, HALF_SOURCE)):
        check(bf16_is_nearest(code, x), f"bf16[{k}] = {code:#06x} is not the nearest to {x}")

    # --- npy: values, dtypes and the format version Tide was asked for ---
    def npy(name, expected, version):
        a = np.load(path(name))
        equal(a, expected, name)
        with open(path(name), "rb") as f:
            check(np.lib.format.read_magic(f) == version, f"{name}: version")

    npy("tide_v1_f4.npy", F32, (1, 0))
    npy("tide_v2_f8.npy", F64, (2, 0))
    npy("tide_v3_i8.npy", I64, (3, 0))
    npy("tide_b1.npy", BOOL, (1, 0))
    npy("tide_scalar.npy", np.array(7.25), (1, 0))
    npy("tide_empty.npy", np.zeros((0, 4), dtype=np.float32), (1, 0))
    npy("tide_transposed.npy", np.ascontiguousarray(F32.T), (1, 0))
    # Memory-mapping needs the data aligned like NumPy's own files.
    m = np.load(path("tide_v1_f4.npy"), mmap_mode="r")
    equal(np.array(m), F32, "memory-mapped tide_v1_f4.npy")

    # --- a checkpoint is plain safetensors ---
    c = load_file(path("tide_checkpoint.safetensors"))
    check({"model.weight", "model.bias", "step", "generator.seed"} <= set(c), f"keys {sorted(c)}")
    check(c["model.weight"].shape == (2, 3), "model.weight shape")
    equal(c["step"], np.array(17, dtype=np.int64), "step")
    equal(c["generator.seed"], np.array(11, dtype=np.int64), "generator.seed")
    check(any(k.startswith("optim.") for k in c), "optimizer state present")
    with safe_open(path("tide_checkpoint.safetensors"), framework="numpy") as f:
        check(f.metadata()["tide.format"] == "checkpoint", "checkpoint metadata")

    print(f"check_tide_files: all {checks} checks passed ({folder})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
