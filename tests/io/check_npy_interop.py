#!/usr/bin/env python3
"""Checks that NumPy reads the .npy files heed's NpyInterop test wrote into DIR.

Element i of a float array is (i - 3) / 4; heed/io/npy_test.cc writes the same values.
Exits 0 when every file loads with the expected dtype, shape and values, 1 otherwise.
"""
import os
import sys

import numpy as np


def ramp(n, dtype):
    return ((np.arange(n, dtype=np.float64) - 3) / 4).astype(dtype)


EXPECTED = {
    "f4_2x3.npy": ramp(6, "<f4").reshape(2, 3),
    "f8_scalar.npy": np.array(-2.25, dtype="<f8"),
    "i8_0x3.npy": np.zeros((0, 3), dtype="<i8"),
    "i8_7.npy": (np.arange(7, dtype="<i8") - 3) * (1 << 40),
    "u1_257.npy": (np.arange(257) * 7 % 256).astype("|u1"),
    "b1_2x2.npy": np.array([[True, False], [False, True]]),
    "bf16_5.npy": ramp(5, "<f4"),  # heed writes bfloat16 widened to float32
}


def main() -> int:
    directory = sys.argv[1]
    errors = []
    for name, want in EXPECTED.items():
        got = np.load(os.path.join(directory, name), allow_pickle=False)
        if got.dtype != want.dtype or got.shape != want.shape or not np.array_equal(got, want):
            errors.append(f"{name}: got {got.dtype} {got.shape}, expected {want.dtype} {want.shape}")
        elif not got.flags.c_contiguous:
            errors.append(f"{name}: not C-contiguous")
    for e in errors:
        print(f"check_npy_interop: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
