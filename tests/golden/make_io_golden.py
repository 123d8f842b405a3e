#!/usr/bin/python3
"""Writes the interchange-file test data for tests/test_io_*.cpp.

1. tests/data/golden/: files written by the reference implementations
   (the `safetensors` package, NumPy, PyTorch) that Tide must read. Every
   value comes from a simple closed formula (arange-based) that the C++ tests
   restate, so they check Tide's reader against the writer, not against
   numbers Tide produced.
2. tests/data/corpus/{safetensors,npy,csv}/: malformed and hostile files,
   one per way a file can be wrong. Tide must refuse each with a tide::Error
   (never crash, never allocate what the header claims). A fuzzer can start
   from this corpus.

Run with Debian's Python (it has numpy and torch):
    /usr/bin/python3 -m pip install --break-system-packages safetensors
    /usr/bin/python3 tests/golden/make_io_golden.py
No randomness is used. Versions are recorded in tests/data/golden/MANIFEST.txt
and in the golden safetensors file's metadata. (The `safetensors` package
writes the metadata map in hash order, so regenerating can reorder those keys
in pytorch_small.safetensors: the bytes change, the content does not.)
"""

import io
import json
import os
import struct
import sys

import numpy as np
import safetensors
import torch
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
GOLDEN = os.path.join(ROOT, "golden")
CORPUS = os.path.join(ROOT, "corpus")


def versions():
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
    }


# ---------------------------------------------------------------------------
# Golden files (the C++ tests restate these formulas)
# ---------------------------------------------------------------------------


def golden_safetensors():
    """pytorch_small.safetensors: every dtype Tide reads, a 0-d and an empty tensor."""
    tensors = {
        # f32[i, j] = 0.5 * (3 i + j) - 1
        "f32": torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5 - 1,
        # f64[i] = i / 3
        "f64": torch.arange(4, dtype=torch.float64) / 3,
        # i64[i] = (i - 3) * 1000000007
        "i64": (torch.arange(6, dtype=torch.int64) - 3) * 1000000007,
        # bool[i] = (i % 3 == 0)
        "bool": torch.arange(5) % 3 == 0,
        # bf16_exact[i] = 0.25 i - 1: exactly representable in bfloat16
        "bf16_exact": (torch.arange(8, dtype=torch.float32) * 0.25 - 1).to(torch.bfloat16),
        # bf16_rounded[i] = (i + 1) / 3, rounded by PyTorch to nearest even
        "bf16_rounded": ((torch.arange(6, dtype=torch.float32) + 1) / 3).to(torch.bfloat16),
        # f16_rounded[i, j] = 0.1 (2 i + j), rounded to half precision
        "f16_rounded": (torch.arange(4, dtype=torch.float32).reshape(2, 2) * 0.1).to(torch.float16),
        # f16_special: +-inf, the largest half, the smallest subnormal, -0, 1 + 2^-10
        "f16_special": torch.tensor(
            [float("inf"), float("-inf"), 65504.0, 2.0**-24, -0.0, 1 + 2.0**-10], dtype=torch.float16
        ),
        # 0-d tensor
        "scalar": torch.tensor(3.5, dtype=torch.float32),
        # empty tensor of shape [0, 3]
        "empty": torch.zeros(0, 3, dtype=torch.float32),
        # a name with a dot and a non-ASCII character, like nested state dicts
        "net.0.wéight": torch.arange(3, dtype=torch.float64) + 0.5,
    }
    metadata = {"format": "pt", "source": "tide-golden", "note": "ünïcode ok"}
    metadata.update({f"version_{k}": v for k, v in versions().items()})
    save_file(tensors, os.path.join(GOLDEN, "pytorch_small.safetensors"), metadata=metadata)


def golden_npy():
    """.npy files from NumPy: each version, each dtype, Fortran order, 0-d, empty."""

    def save(name, array, version=None):
        path = os.path.join(GOLDEN, name)
        with open(path, "wb") as f:
            if version is None:
                np.save(f, array)  # NumPy picks version 1.0 for these headers
            else:
                np.lib.format.write_array(f, array, version=version)

    # v1_f4[i, j] = (4 i + j) / 4
    save("v1_f4.npy", (np.arange(12, dtype=np.float32) / 4).reshape(3, 4))
    # v1_f8[i] = i / 7
    save("v1_f8.npy", np.arange(5, dtype=np.float64) / 7)
    # v1_i8[i, j] = (3 i + j - 4) * 2^40
    save("v1_i8.npy", (np.arange(6, dtype=np.int64) - 4).reshape(2, 3) * 2**40)
    # v1_b1[i] = i % 2 == 1
    save("v1_b1.npy", np.arange(7) % 2 == 1)
    # v1_f2[i] = i / 8 - 1 (exact in half precision)
    save("v1_f2.npy", (np.arange(6, dtype=np.float16) / 8 - 1).astype(np.float16))
    # v1_i4[i] = (i - 2) * 100000
    save("v1_i4.npy", ((np.arange(5) - 2) * 100000).astype(np.int32))
    # v1_fortran_f8[i, j, k] = 100 i + 10 j + k, stored column-major
    a = np.fromfunction(lambda i, j, k: 100 * i + 10 * j + k, (2, 3, 4), dtype=np.float64)
    save("v1_fortran_f8.npy", np.asfortranarray(a))
    # v1_scalar: 0-d, 2.25
    save("v1_scalar_f8.npy", np.array(2.25, dtype=np.float64))
    # v1_empty: shape (0, 3)
    save("v1_empty_f4.npy", np.zeros((0, 3), dtype=np.float32))
    # Forced newer versions (NumPy only uses them for huge or non-latin-1 headers)
    # v2_f4[i, j] = (4 i + j) / 4, like v1_f4
    save("v2_f4.npy", (np.arange(12, dtype=np.float32) / 4).reshape(3, 4), version=(2, 0))
    # v3_f8[i] = i / 7, like v1_f8
    save("v3_f8.npy", np.arange(5, dtype=np.float64) / 7, version=(3, 0))


# ---------------------------------------------------------------------------
# Bad files
# ---------------------------------------------------------------------------


def st_bytes(header, data=b"", pad=True, length=None):
    """A safetensors file: the 8-byte length, the header text, the data."""
    if isinstance(header, (dict, list)):
        header = json.dumps(header, separators=(",", ":"))
    if isinstance(header, str):
        header = header.encode("utf-8")
    if pad:
        header += b" " * ((8 - len(header) % 8) % 8)
    n = len(header) if length is None else length
    return struct.pack("<Q", n) + header + data


def f32(n):
    return {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}


def safetensors_corpus():
    d = os.path.join(CORPUS, "safetensors")
    cases = {
        "empty_file": b"",
        "too_short_5_bytes": b"\x08\x00\x00\x00\x00",
        "header_length_u64_max": st_bytes("{}", length=2**64 - 1),
        "header_length_terabytes": st_bytes("{}", length=2**40),
        "header_length_over_100MB_limit": st_bytes("{}", length=100_000_001),
        "header_length_past_end_of_file": st_bytes("{}", length=1000),
        "header_length_zero": st_bytes(b"", pad=False),
        "header_not_json": st_bytes("this is not json"),
        "header_truncated_json": st_bytes('{"w":{"dtype":"F32"'),
        "header_trailing_garbage": st_bytes("{} x"),
        "header_json_array": st_bytes("[1,2,3]"),
        "header_json_string": st_bytes('"hello"'),
        "header_invalid_utf8": st_bytes(b'{"w\xff":1}'),
        "header_overlong_utf8": st_bytes(b'{"\xc0\xaf":1}'),
        "header_deeply_nested": st_bytes('{"__metadata__":' + "[" * 100 + "]" * 100 + "}"),
        "tensor_entry_not_object": st_bytes({"w": 3}),
        "missing_dtype": st_bytes({"w": {"shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
        "missing_shape": st_bytes({"w": {"dtype": "F32", "data_offsets": [0, 4]}}, b"\0" * 4),
        "missing_data_offsets": st_bytes({"w": {"dtype": "F32", "shape": [1]}}, b"\0" * 4),
        "unexpected_field": st_bytes({"w": dict(f32(1), offsets=[0, 4])}, b"\0" * 4),
        "dtype_not_string": st_bytes({"w": dict(f32(1), dtype=32)}, b"\0" * 4),
        "dtype_unknown_F31": st_bytes({"w": dict(f32(1), dtype="F31")}, b"\0" * 4),
        "dtype_lowercase_f32": st_bytes({"w": dict(f32(1), dtype="f32")}, b"\0" * 4),
        "dtype_unsupported_I32": st_bytes({"w": dict(f32(1), dtype="I32")}, b"\0" * 4),
        "shape_not_array": st_bytes({"w": dict(f32(1), shape=1)}, b"\0" * 4),
        "shape_negative_entry": st_bytes({"w": dict(f32(1), shape=[-1])}, b"\0" * 4),
        "shape_fractional_entry": st_bytes({"w": dict(f32(1), shape=[1.5])}, b"\0" * 4),
        "shape_entry_above_int64": st_bytes({"w": dict(f32(1), shape=[2**63])}, b"\0" * 4),
        "shape_entry_above_uint64": st_bytes(
            '{"w":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]}}', b"\0" * 4
        ),
        "shape_element_count_overflows": st_bytes(
            {"w": {"dtype": "F32", "shape": [2**32, 2**32], "data_offsets": [0, 0]}}
        ),
        "shape_byte_count_overflows": st_bytes(
            {"w": {"dtype": "F64", "shape": [2**61], "data_offsets": [0, 0]}}
        ),
        "shape_nine_dims": st_bytes({"w": dict(f32(1), shape=[1] * 9)}, b"\0" * 4),
        "shape_terabytes_in_tiny_file": st_bytes(
            {"w": {"dtype": "F32", "shape": [2**38], "data_offsets": [0, 2**40]}}, b"\0" * 8
        ),
        "offsets_not_array": st_bytes({"w": dict(f32(1), data_offsets=4)}, b"\0" * 4),
        "offsets_three_numbers": st_bytes({"w": dict(f32(1), data_offsets=[0, 4, 8])}, b"\0" * 8),
        "offsets_negative": st_bytes({"w": dict(f32(1), data_offsets=[-4, 0])}, b"\0" * 4),
        "offsets_end_before_begin": st_bytes({"w": dict(f32(1), data_offsets=[8, 4])}, b"\0" * 8),
        "offsets_past_end_of_file": st_bytes({"w": dict(f32(2), data_offsets=[0, 8])}, b"\0" * 4),
        "offsets_length_mismatch": st_bytes({"w": dict(f32(2), data_offsets=[0, 12])}, b"\0" * 12),
        "tensors_overlap": st_bytes(
            {"a": f32(2), "b": dict(f32(2), data_offsets=[4, 12])}, b"\0" * 12
        ),
        "gap_between_tensors": st_bytes(
            {"a": f32(1), "b": dict(f32(1), data_offsets=[8, 12])}, b"\0" * 12
        ),
        "gap_at_start": st_bytes({"a": dict(f32(1), data_offsets=[4, 8])}, b"\0" * 8),
        "trailing_bytes_after_last_tensor": st_bytes({"a": f32(1)}, b"\0" * 8),
        "data_without_tensors": st_bytes({}, b"\0" * 16),
        "duplicate_tensor_name": st_bytes(
            '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
            '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
            b"\0" * 8,
        ),
        "duplicate_field_in_tensor": st_bytes(
            '{"a":{"dtype":"F32","dtype":"F64","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4
        ),
        "metadata_not_object": st_bytes({"__metadata__": "pt"}),
        "metadata_value_not_string": st_bytes({"__metadata__": {"epoch": 3}}),
        "metadata_value_nested_object": st_bytes({"__metadata__": {"k": {"x": "y"}}}),
    }
    for name, data in cases.items():
        with open(os.path.join(d, name + ".safetensors"), "wb") as f:
            f.write(data)


def npy_bytes(header, data=b"", version=(1, 0), length=None, pad=True):
    if isinstance(header, str):
        header = header.encode("latin-1")
    if pad:
        fixed = 6 + 2 + (2 if version[0] == 1 else 4)
        header += b" " * ((64 - (fixed + len(header) + 1) % 64) % 64) + b"\n"
    n = len(header) if length is None else length
    fmt = "<H" if version[0] == 1 else "<I"
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, n) + header + data


def npy_of(array):
    f = io.BytesIO()
    np.save(f, array, allow_pickle=True)
    return f.getvalue()


def npy_corpus():
    d = os.path.join(CORPUS, "npy")
    good = npy_of(np.arange(6, dtype=np.float32).reshape(2, 3))
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
    data6 = np.arange(6, dtype=np.float32).tobytes()
    cases = {
        "empty_file": b"",
        "truncated_magic": b"\x93NUM",
        "bad_magic": b"\x93NUMPZ" + good[6:],
        "not_npy_text": b"just some text, not an array\n",
        "version_1_1": b"\x93NUMPY\x01\x01" + good[8:],
        "version_4_0": b"\x93NUMPY\x04\x00" + good[8:],
        "header_length_past_end_of_file": npy_bytes(hdr, data6, length=60000),
        "header_length_4GB_v2": npy_bytes(hdr, data6, version=(2, 0), length=2**32 - 1),
        "header_length_field_truncated_v2": b"\x93NUMPY\x02\x00\x10\x00",
        "header_not_dict": npy_bytes("[1, 2, 3]", data6),
        "header_missing_shape": npy_bytes("{'descr': '<f4', 'fortran_order': False, }", data6),
        "header_missing_descr": npy_bytes("{'fortran_order': False, 'shape': (6,), }", data6),
        "header_extra_key": npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1, }", data6
        ),
        "header_duplicate_key": npy_bytes(
            "{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, 'shape': (6,), }", data6
        ),
        "header_code_injection": npy_bytes(
            "{'descr': __import__('os').system('echo pwned'), 'fortran_order': False, "
            "'shape': (6,), }",
            data6,
        ),
        "header_unterminated_string": npy_bytes("{'descr': '<f4", data6),
        "header_trailing_garbage": npy_bytes(hdr + " extra", data6),
        "header_non_ascii_byte": npy_bytes(b"{'descr': '<f4\xe9', 'fortran_order': False, 'shape': (6,), }", data6),
        "fortran_order_not_bool": npy_bytes(
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (6,), }", data6
        ),
        "shape_not_tuple": npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (6), }", data6),
        "shape_list_not_tuple": npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': [6], }", data6
        ),
        "shape_negative": npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 6), }", data6),
        "shape_fractional": npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,), }", data6),
        "shape_entry_above_int64": npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775808,), }", data6
        ),
        "shape_element_count_overflows": npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", data6
        ),
        "shape_byte_count_overflows": npy_bytes(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,), }", data6
        ),
        "shape_terabytes_in_tiny_file": npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (274877906944,), }", data6
        ),
        "shape_nine_dims": npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 6), }", data6
        ),
        "big_endian_f4": npy_of(np.arange(6, dtype=">f4")),
        "big_endian_i8": npy_of(np.arange(6, dtype=">i8")),
        "unsupported_dtype_complex64": npy_of(np.arange(3, dtype=np.complex64)),
        "unsupported_dtype_uint16": npy_of(np.arange(3, dtype=np.uint16)),
        "unsupported_dtype_object_pickle": npy_of(np.array([1, "a", None], dtype=object)),
        "structured_dtype": npy_of(np.zeros(2, dtype=[("x", "<f4"), ("y", "<i8")])),
        "truncated_data": good[:-5],
        "data_length_mismatch_extra_bytes": good + b"\0\0\0\0",
    }
    for name, data in cases.items():
        with open(os.path.join(d, name + ".npy"), "wb") as f:
            f.write(data)


def csv_corpus():
    d = os.path.join(CORPUS, "csv")
    cases = {
        "empty_file": "",
        "blank_lines_only": "\n  \n\n",
        "header_only": "x,y,z\n",
        "ragged_row": "x,y\n1,2\n3,4,5\n6,7\n",
        "short_row": "1,2,3\n4,5\n",
        "non_numeric_cell": "1,2\n3,abc\n",
        "number_with_unit": "1,2\n3,4kg\n",
        "nan_cell": "x,y\n1,2\n3,nan\n",
        "inf_cell": "1,2\n-inf,4\n",
        "empty_cell": "1,,3\n4,5,6\n",
        "trailing_delimiter": "1,2,\n3,4,\n",
        "hex_number": "1,2\n3,0x10\n",
        "float32_overflow": "1,2\n3,1e39\n",
        "two_header_rows": "a,b\nc,d\n1,2\n",
        "semicolon_separated": "1;2\n3;4\n",
    }
    for name, text in cases.items():
        with open(os.path.join(d, name + ".csv"), "w", newline="") as f:
            f.write(text)


def main():
    os.makedirs(GOLDEN, exist_ok=True)
    for sub in ("safetensors", "npy", "csv"):
        os.makedirs(os.path.join(CORPUS, sub), exist_ok=True)
    golden_safetensors()
    golden_npy()
    safetensors_corpus()
    npy_corpus()
    csv_corpus()
    with open(os.path.join(GOLDEN, "MANIFEST.txt"), "w") as f:
        f.write("Generated by tests/golden/make_io_golden.py (no randomness).\n")
        for k, v in versions().items():
            f.write(f"{k} {v}\n")


if __name__ == "__main__":
    main()
