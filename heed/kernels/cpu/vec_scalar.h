// Portable one-lane "vector" for the scalar fallback of the fused attention kernels: the
// same interface as vec_avx512.h / vec_avx2.h, so the algorithm is written once.
#pragma once

#include <algorithm>
#include <cmath>

namespace heed::kernels::cpu::scalar {

struct Vec {
  using Reg = float;
  static constexpr int kWidth = 1;

  static inline Reg zero() { return 0.0f; }
  static inline Reg set1(float x) { return x; }
  static inline Reg load(const float* p) { return *p; }
  static inline void store(float* p, Reg v) { *p = v; }
  static inline Reg load_n(const float* p, int) { return *p; }
  static inline void store_n(float* p, Reg v, int) { *p = v; }
  static inline Reg add(Reg a, Reg b) { return a + b; }
  static inline Reg sub(Reg a, Reg b) { return a - b; }
  static inline Reg mul(Reg a, Reg b) { return a * b; }
  static inline Reg max(Reg a, Reg b) { return a > b ? a : b; }
  static inline Reg min(Reg a, Reg b) { return a < b ? a : b; }
  static inline Reg div(Reg a, Reg b) { return a / b; }
  static inline Reg fma(Reg a, Reg b, Reg c) { return a * b + c; }
  static inline float hsum(Reg v) { return v; }
  static inline float hmax(Reg v) { return v; }
  static inline bool any_greater(Reg a, Reg b) { return a > b; }
  // s where lo <= j < hi, -inf elsewhere.
  static inline Reg keep_between(Reg s, Reg lo, Reg hi, Reg j) {
    return lo <= j && j < hi ? s : -__builtin_inff();
  }
  static inline void transpose(Reg*) {}
  // 2^x; 0 for -inf, +inf for large x.
  static inline Reg exp2(Reg x) { return std::exp2(x); }
  static inline Reg exp2_nonpositive(Reg x) { return std::exp2(x); }
};

}  // namespace heed::kernels::cpu::scalar
