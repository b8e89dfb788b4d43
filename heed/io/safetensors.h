// safetensors (Hugging Face) reader and writer: an 8-byte little-endian header length N,
// N bytes of JSON {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the data.
#pragma once

#include <filesystem>
#include <map>
#include <span>
#include <string>

#include "heed/io/raw_tensor.h"

namespace heed::io {

struct SafetensorsFile {
  std::map<std::string, RawTensor> tensors;     // sorted by name
  std::map<std::string, std::string> metadata;  // the optional "__metadata__" object
};

struct SafetensorsReadOptions {
  // Read "F16" tensors widened to F32 (exact). When false an F16 tensor is an error.
  bool f16_to_f32 = false;
};

// Reads and validates a whole file. Throws heed::Error naming the path and the problem
// for a truncated file, a header length beyond the file, JSON that does not parse, a
// duplicate name, an unknown or unsupported dtype, a bad shape, offsets out of range,
// overlapping, leaving gaps or not matching shape * dtype size.
// Supported dtypes: F32, F64, I64, U8, BF16 (and F16 with f16_to_f32).
SafetensorsFile read_safetensors(const std::filesystem::path& path,
                                 const SafetensorsReadOptions& options = {});

// Writes atomically (see write_file_atomically): tensors in name order, the header padded
// with spaces to a multiple of 8 bytes, "__metadata__" omitted when empty. Throws
// heed::Error for an empty name, the reserved name "__metadata__" or a tensor whose byte
// size does not match its shape and dtype.
void write_safetensors(const std::filesystem::path& path,
                       const std::map<std::string, RawTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The safetensors dtype string for a heed dtype ("F32", "F64", "I64", "U8", "BF16").
const char* safetensors_dtype_name(DType dtype);

}  // namespace heed::io
