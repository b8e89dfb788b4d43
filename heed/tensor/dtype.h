// Element types a tensor can hold, and compile-time dispatch over them.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "heed/tensor/error.h"

namespace heed {

// bfloat16 storage: the upper 16 bits of an IEEE float (round to nearest even).
struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  explicit bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) { bits = static_cast<uint16_t>((u >> 16) | 0x40); return; }
    u += 0x7fffu + ((u >> 16) & 1u);
    bits = static_cast<uint16_t>(u >> 16);
  }
  explicit operator float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

enum class DType : uint8_t { kF32, kF64, kI64, kU8, kBF16 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kF64: return "f64";
    case DType::kI64: return "i64";
    case DType::kU8: return "u8";
    case DType::kBF16: return "bf16";
  }
  return "?";
}

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF64: return 8;
    case DType::kI64: return 8;
    case DType::kU8: return 1;
    case DType::kBF16: return 2;
  }
  return 0;
}

inline bool is_floating_dtype(DType t) { return t == DType::kF32 || t == DType::kF64 || t == DType::kBF16; }

template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::kF32;
  else if constexpr (std::is_same_v<T, double>) return DType::kF64;
  else if constexpr (std::is_same_v<T, int64_t>) return DType::kI64;
  else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, bool>) return DType::kU8;
  else if constexpr (std::is_same_v<T, bf16>) return DType::kBF16;
  else static_assert(sizeof(T) == 0, "heed: unsupported element type");
}

// Calls f(T{}) with T the C++ type of a floating dtype (f32 or f64); `op` names the caller.
template <class F>
decltype(auto) dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::kF32: return f(float{});
    case DType::kF64: return f(double{});
    default: fail(op, ": expected a f32 or f64 tensor, got ", dtype_name(t));
  }
}

// Calls f(T{}) for any dtype.
template <class F>
decltype(auto) dispatch_all(DType t, F&& f) {
  switch (t) {
    case DType::kF32: return f(float{});
    case DType::kF64: return f(double{});
    case DType::kI64: return f(int64_t{});
    case DType::kU8: return f(uint8_t{});
    case DType::kBF16: return f(bf16{});
  }
  fail("dtype: unknown dtype");
}

}  // namespace heed
