// NumPy .npy reader and writer (format versions 1.0, 2.0 and 3.0; little-endian, C order),
// used to export attention weights and to read the ONNX conformance cases.
#pragma once

#include <filesystem>
#include <string>

#include "heed/io/raw_tensor.h"

namespace heed::io {

// What a .npy file held, beyond the tensor itself.
struct NpyArray {
  RawTensor tensor;
  std::string descr;     // the file's dtype string, e.g. "<f4", "|b1"
  bool is_bool = false;  // "|b1": tensor is U8 holding 0 or 1
};

// Reads '<f4' (F32), '<f8' (F64), '<i8' (I64), '|u1' (U8), '|b1' (U8, values 0/1) and
// '<f2' (widened to F32, exact). Throws heed::Error naming the path and the problem for a
// bad magic, an unparsable header, a big-endian or unsupported dtype, Fortran order, or a
// data size that does not match the shape.
NpyArray read_npy_array(const std::filesystem::path& path);

// read_npy_array(path).tensor.
RawTensor read_npy(const std::filesystem::path& path);

struct NpyWriteOptions {
  // Write a U8 tensor as NumPy bool ('|b1'); every value must be 0 or 1.
  bool bool_elements = false;
};

// Writes atomically in format 1.0 (2.0 when the header needs more than 65535 bytes), the
// header padded to a multiple of 64 bytes as NumPy does. NumPy has no bfloat16: a BF16
// tensor is written as '<f4' (exact widening), so it reads back as F32.
void write_npy(const std::filesystem::path& path, const RawTensor& tensor,
               const NpyWriteOptions& options = {});

}  // namespace heed::io
