// RawTensor: a dtype, a shape and the little-endian bytes of a C-order array. It is what
// heed's file formats (safetensors, NPY) read and write; adapters to heed::Tensor live elsewhere.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "heed/tensor/dtype.h"
#include "heed/tensor/error.h"

namespace heed::io {

static_assert(std::endian::native == std::endian::little,
              "heed::io assumes a little-endian host: file formats store little-endian bytes");

struct RawTensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;   // empty for a 0-d scalar
  std::vector<std::byte> data;  // numel * dtype_size(dtype) bytes, C order
};

// Number of elements of `shape` (1 for a 0-d scalar). Throws heed::Error naming `what`
// for a negative dimension or a product that overflows int64.
inline int64_t shape_numel(std::span<const int64_t> shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    HEED_CHECK(d >= 0, what, ": dimension ", d, " is negative, expected >= 0");
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) {
      fail(what, ": the number of elements overflows int64");
    }
    n *= d;
  }
  return n;
}

// Byte size of a tensor of `shape` and `dtype`, checked against overflow.
inline uint64_t shape_bytes(std::span<const int64_t> shape, DType dtype, const std::string& what) {
  const auto n = static_cast<uint64_t>(shape_numel(shape, what));
  const uint64_t item = dtype_size(dtype);
  HEED_CHECK(n <= std::numeric_limits<uint64_t>::max() / item, what, ": the byte size overflows");
  return n * item;
}

// Throws heed::Error unless data.size() matches shape and dtype; `what` names the caller.
inline void check_raw_tensor(const RawTensor& t, const std::string& what) {
  const uint64_t want = shape_bytes(t.shape, t.dtype, what);
  HEED_CHECK(t.data.size() == want, what, ": tensor holds ", t.data.size(), " bytes, expected ", want,
             " for its shape and dtype ", dtype_name(t.dtype));
}

// A RawTensor holding `values` (C order) with the given shape; T is float, double, int64_t,
// uint8_t or bf16.
template <class T>
RawTensor make_raw_tensor(std::vector<int64_t> shape, std::span<const T> values) {
  RawTensor t;
  t.dtype = dtype_of<T>();
  t.shape = std::move(shape);
  const auto n = static_cast<uint64_t>(shape_numel(t.shape, "make_raw_tensor"));
  HEED_CHECK(values.size() == n, "make_raw_tensor: got ", values.size(), " values, expected ", n,
             " for the shape");
  t.data.resize(n * sizeof(T));
  if (n != 0) std::memcpy(t.data.data(), values.data(), t.data.size());
  return t;
}

// The elements of `t` as T; throws heed::Error when T does not match t.dtype.
template <class T>
std::vector<T> raw_tensor_values(const RawTensor& t) {
  HEED_CHECK(t.dtype == dtype_of<T>(), "raw_tensor_values: tensor is ", dtype_name(t.dtype),
             ", asked for ", dtype_name(dtype_of<T>()));
  check_raw_tensor(t, "raw_tensor_values");
  std::vector<T> out(t.data.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), t.data.data(), t.data.size());
  return out;
}

// IEEE binary16 bits -> float (exact: every half is a float).
inline float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf or NaN (payload kept)
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);  // 112 = 127 - 15
  } else if (mantissa == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal half: normalise into a float exponent.
    uint32_t e = 113;  // exponent of 2^-14, the subnormal scale, in float bias
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mantissa & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

// Widens `count` little-endian binary16 values at `src` into a F32 byte buffer.
inline std::vector<std::byte> f16_bytes_to_f32_bytes(const std::byte* src, size_t count) {
  std::vector<std::byte> out(count * 4);
  for (size_t i = 0; i < count; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    const float f = f16_bits_to_f32(h);
    std::memcpy(out.data() + 4 * i, &f, 4);
  }
  return out;
}

}  // namespace heed::io
