// AVX2 + FMA float vectors for the fused attention kernels: loads with tails, horizontal
// reductions and a polynomial exp2. Include only from *_avx2.cc files.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace heed::kernels::cpu::avx2 {

struct Vec {
  using Reg = __m256;
  static constexpr int kWidth = 8;

  static inline Reg zero() { return _mm256_setzero_ps(); }
  static inline Reg set1(float x) { return _mm256_set1_ps(x); }
  static inline Reg load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, Reg v) { _mm256_storeu_ps(p, v); }
  static inline __m256i tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  // The first n lanes (0 < n <= 8) from p, zeros elsewhere; nothing beyond p + n is read.
  static inline Reg load_n(const float* p, int n) { return _mm256_maskload_ps(p, tail_mask(n)); }
  static inline void store_n(float* p, Reg v, int n) { _mm256_maskstore_ps(p, tail_mask(n), v); }
  static inline Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static inline Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  static inline Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static inline Reg max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
  static inline Reg min(Reg a, Reg b) { return _mm256_min_ps(a, b); }
  static inline Reg div(Reg a, Reg b) { return _mm256_div_ps(a, b); }
  static inline Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static inline float hsum(Reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static inline float hmax(Reg v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // Whether a > b in any lane (false where either is NaN).
  static inline bool any_greater(Reg a, Reg b) { return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)) != 0; }

  // In-place transpose of an 8 x 8 block held as 8 rows.
  static inline void transpose(Reg r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
      u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
      u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
      u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; ++i) {
      r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
      r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
  }

  // s where lo <= j < hi (lane by lane), -inf elsewhere.
  static inline Reg keep_between(Reg s, Reg lo, Reg hi, Reg j) {
    const __m256 in = _mm256_and_ps(_mm256_cmp_ps(lo, j, _CMP_LE_OQ), _mm256_cmp_ps(j, hi, _CMP_LT_OQ));
    return _mm256_blendv_ps(_mm256_set1_ps(-__builtin_inff()), s, in);
  }

  // 2^x with relative error < 3e-7: exactly 0 for x <= -127 (also -inf), +inf for
  // x >= 128 (also +inf); never a denormal. Same polynomial as the AVX-512 version.
  static inline Reg exp2(Reg x) {
    return exp2_clamped(_mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(128.0f)));
  }

  // exp2 for x <= 0 (or -inf), as in a softmax after subtracting the row max.
  static inline Reg exp2_nonpositive(Reg x) {
    return exp2_clamped(_mm256_max_ps(x, _mm256_set1_ps(-127.0f)));
  }

  // 2^x for x already clamped to [-127, 128]: the body both exp2 forms share.
  static inline Reg exp2_clamped(Reg x) {
    // Adding 1.5 * 2^23 + 127 rounds x to an integer n and leaves n + 127 in the low bits.
    const Reg magic = _mm256_set1_ps(12583039.0f);
    Reg y = _mm256_add_ps(x, magic);
    Reg f = _mm256_sub_ps(x, _mm256_sub_ps(y, magic));
    Reg p = _mm256_set1_ps(1.3276471e-3f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.6755419e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.5507131e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022120e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.9314694e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0000001f));
    __m256i e = _mm256_slli_epi32(_mm256_castps_si256(y), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
};

}  // namespace heed::kernels::cpu::avx2
