#!/usr/bin/env python3
"""Writes the small .npy fixtures heed/io/npy_test.cc reads, with NumPy itself.

Run from this folder: python3 make_npy_fixtures.py. Values are exact in every dtype so the
test can recompute them: element i of a float array is (i - 3) / 4.
"""
import numpy as np


def ramp(n, dtype):
    return ((np.arange(n, dtype=np.float64) - 3) / 4).astype(dtype)


np.save("f4_2x3.npy", ramp(6, "<f4").reshape(2, 3))
np.save("f8_scalar.npy", np.array(-2.25, dtype="<f8"))
np.save("i8_0x3.npy", np.zeros((0, 3), dtype="<i8"))
np.save("i8_7.npy", (np.arange(7, dtype="<i8") - 3) * (1 << 40))
np.save("u1_257.npy", (np.arange(257) * 7 % 256).astype("|u1"))
np.save("b1_2x2.npy", np.array([[True, False], [False, True]]))
np.save("f2_5.npy", ramp(5, "<f2"))
# Files heed must refuse with a clear message.
np.save("fortran_2x3.npy", np.asfortranarray(ramp(6, "<f4").reshape(2, 3)))
np.save("big_endian_f4.npy", ramp(4, ">f4"))
np.save("i4_3.npy", np.arange(3, dtype="<i4"))
