#!/usr/bin/env python3
"""Checks that heed's safetensors files and the Hugging Face `safetensors` package agree.

  --check PATH   read PATH (written by heed's interop test) with `safetensors`, check
                 every tensor, dtype, shape, value and the metadata;
  --write PATH   write PATH with `safetensors` for heed's test to read back.

Both sides compute the same values from the formula in `expected_values`; its C++ twin is
patterned() in tests/io/io_test_support.h. Exits 0 when all checks pass, 1 otherwise.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import safetensors

# name -> (safetensors dtype, shape); the salt of a tensor is its index in this list.
SPEC = [
    ("attn.f32", "F32", [3, 5]),
    ("attn.f64", "F64", [2, 3, 4]),
    ("ids.i64", "I64", [7]),
    ("bytes.u8", "U8", [257]),
    ("w.bf16", "BF16", [4, 6]),
    ("scalar.f64", "F64", []),
    ("empty.f32", "F32", [2, 0, 3]),
]
# Only in the file Python writes: heed reads F16 widened to F32.
PYTHON_ONLY = [("half.f16", "F16", [5])]
HEED_METADATA = {"writer": "heed", "purpose": "interop"}
PYTHON_METADATA = {"writer": "safetensors-python", "purpose": "interop"}
PYTHON_SALT = 100  # the Python-written file uses salt + 100, so it cannot echo heed's


def expected_values(dtype: str, shape: list[int], salt: int) -> np.ndarray:
    """Element i: floats ((37 i + salt) mod 101 - 50) / 8 (exact in bf16 and f16),
    I64 (i - 3) * 2^40 + salt, U8 (7 i + salt) mod 256."""
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    i = np.arange(n, dtype=np.int64)
    if dtype in ("F32", "F64", "BF16", "F16"):
        v = (((37 * i + salt) % 101) - 50).astype(np.float64) / 8.0
        np_type = {"F32": np.float32, "F64": np.float64, "BF16": np.float32, "F16": np.float16}[dtype]
        v = v.astype(np_type)
    elif dtype == "I64":
        v = (i - 3) * (1 << 40) + salt
    elif dtype == "U8":
        v = ((7 * i + salt) % 256).astype(np.uint8)
    else:
        raise ValueError(dtype)
    return v.reshape(shape)


def bf16_bits(values_f32: np.ndarray) -> np.ndarray:
    """bfloat16 bits of float32 values that bf16 represents exactly."""
    bits = np.ascontiguousarray(values_f32, dtype=np.float32).view(np.uint32)
    assert not np.any(bits & 0xFFFF), "value not exact in bfloat16"
    return (bits >> 16).astype(np.uint16)


def check(path: str) -> list[str]:
    errors: list[str] = []
    with safetensors.safe_open(path, framework="np") as f:
        metadata = f.metadata()
        keys = set(f.keys())
    if metadata != HEED_METADATA:
        errors.append(f"metadata {metadata!r}, expected {HEED_METADATA!r}")
    want_keys = {name for name, _, _ in SPEC}
    if keys != want_keys:
        errors.append(f"tensor names {sorted(keys)}, expected {sorted(want_keys)}")
    with open(path, "rb") as fh:
        raw = dict(safetensors.deserialize(fh.read()))
    for salt, (name, dtype, shape) in enumerate(SPEC):
        if name not in raw:
            continue
        info = raw[name]
        if info["dtype"] != dtype or list(info["shape"]) != shape:
            errors.append(f"{name}: {info['dtype']} {info['shape']}, expected {dtype} {shape}")
            continue
        want = expected_values(dtype, shape, salt)
        if dtype == "BF16":
            got_bits = np.frombuffer(bytes(info["data"]), dtype="<u2").reshape(shape)
            if not np.array_equal(got_bits, bf16_bits(want)):
                errors.append(f"{name}: bf16 bits differ")
            continue
        with safetensors.safe_open(path, framework="np") as f:
            got = f.get_tensor(name)
        if got.dtype != want.dtype or got.shape != want.shape or not np.array_equal(got, want):
            errors.append(f"{name}: got {got.dtype} {got.shape} {got.ravel()[:8]}, "
                          f"expected {want.dtype} {want.shape} {want.ravel()[:8]}")
    return errors


def write(path: str) -> None:
    arrays = []  # keeps the buffers alive while serialize_file reads them
    specs = {}
    for salt, (name, dtype, shape) in enumerate(SPEC + PYTHON_ONLY):
        values = expected_values(dtype, shape, salt + PYTHON_SALT)
        if dtype == "BF16":
            values = bf16_bits(values)
        values = np.ascontiguousarray(values)
        arrays.append(values)
        type_name = "bfloat16" if dtype == "BF16" else values.dtype.name
        specs[name] = safetensors.TensorSpec(dtype=type_name, shape=shape,
                                             data_ptr=values.ctypes.data, data_len=values.nbytes)
    safetensors.serialize_file(specs, path, PYTHON_METADATA)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", metavar="PATH", help="a file heed wrote, to verify")
    parser.add_argument("--write", metavar="PATH", help="where to write a file for heed to read")
    args = parser.parse_args()
    if args.check:
        errors = check(args.check)
        for e in errors:
            print(f"check_safetensors_interop: {args.check}: {e}", file=sys.stderr)
        if errors:
            return 1
    if args.write:
        write(args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
