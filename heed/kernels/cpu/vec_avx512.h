// AVX-512 float vectors for the fused attention kernels: loads with tails, horizontal
// reductions and a polynomial exp2; tail masks and bf16 conversions for every AVX-512
// kernel. Include only from *_avx512.cc files.
#pragma once

#include <immintrin.h>

// GCC 12 warns that the _mm512_undefined_*() inside intrinsics such as _mm512_max_ps may be
// used uninitialised (a known false positive of its headers); it is not our code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <cstdint>

namespace heed::kernels::cpu::avx512 {

// The first min(max(w, 0), 16) lanes: a tail of w elements from here.
inline __mmask16 lanes(int64_t w) {
  return w >= 16 ? __mmask16(0xFFFF) : w <= 0 ? __mmask16(0) : __mmask16((1u << w) - 1);
}

struct Vec {
  using Reg = __m512;
  static constexpr int kWidth = 16;

  static inline Reg zero() { return _mm512_setzero_ps(); }
  static inline Reg set1(float x) { return _mm512_set1_ps(x); }
  static inline Reg load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, Reg v) { _mm512_storeu_ps(p, v); }
  // The first n lanes (0 < n <= 16) from p, zeros elsewhere; nothing beyond p + n is read.
  static inline Reg load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(lanes(n), p); }
  static inline void store_n(float* p, Reg v, int n) { _mm512_mask_storeu_ps(p, lanes(n), v); }
  static inline Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static inline Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  static inline Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static inline Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  static inline Reg min(Reg a, Reg b) { return _mm512_min_ps(a, b); }
  static inline Reg div(Reg a, Reg b) { return _mm512_div_ps(a, b); }
  static inline Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static inline float hsum(Reg v) { return _mm512_reduce_add_ps(v); }
  static inline float hmax(Reg v) { return _mm512_reduce_max_ps(v); }
  // Whether a > b in any lane (false where either is NaN).
  static inline bool any_greater(Reg a, Reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ) != 0; }

  // In-place transpose of a 16 x 16 block held as 16 rows.
  static inline void transpose(Reg r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
      r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
      r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
      r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
      r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    // r[4a + b] now holds, in each 128-bit lane L, elements b of rows 4a..4a+3 of lane L.
    for (int i = 0; i < 4; ++i) {
      t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);       // lanes 0, 2 of both
      t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);   // lanes 1, 3 of both
      t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
      t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; ++i) {
      r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
      r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
      r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
      r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
  }

  // s where lo <= j < hi (lane by lane), -inf elsewhere.
  static inline Reg keep_between(Reg s, Reg lo, Reg hi, Reg j) {
    const __mmask16 in = _mm512_cmp_ps_mask(lo, j, _CMP_LE_OQ) & _mm512_cmp_ps_mask(j, hi, _CMP_LT_OQ);
    return _mm512_mask_blend_ps(in, _mm512_set1_ps(-__builtin_inff()), s);
  }

  // 2^x with relative error < 3e-7: exactly 0 for x <= -127 (also -inf), +inf for
  // x >= 128 (also +inf); never a denormal, so no slow microcode assists.
  static inline Reg exp2(Reg x) {
    return exp2_clamped(_mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(128.0f)));
  }

  // exp2 for x <= 0 (or -inf), as in a softmax after subtracting the row max: one clamp less.
  static inline Reg exp2_nonpositive(Reg x) {
    return exp2_clamped(_mm512_max_ps(x, _mm512_set1_ps(-127.0f)));
  }

  // 2^x for x already clamped to [-127, 128]: the body both exp2 forms share.
  static inline Reg exp2_clamped(Reg x) {
    // Adding 1.5 * 2^23 + 127 rounds x to an integer n and leaves n + 127 in the low bits.
    const Reg magic = _mm512_set1_ps(12583039.0f);
    Reg y = _mm512_add_ps(x, magic);
    Reg f = _mm512_sub_ps(x, _mm512_sub_ps(y, magic));  // x - n, in [-0.5, 0.5]
    // Minimax fit of 2^f on [-0.5, 0.5] (relative error 2.3e-7 in fp32).
    Reg p = _mm512_set1_ps(1.3276471e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6755419e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5507131e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022120e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314694e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000001f));
    // (n + 127) << 23 is 2^n for n >= -126, +0 for n = -127 and +inf for n = 128.
    __m512i e = _mm512_slli_epi32(_mm512_castps_si512(y), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
  }
};

// Free helpers shared by the AVX-512 kernels (attention, packed and AMX GEMMs; lanes() above).

// 32 bf16 (round to nearest even) from lo (elements 0-15) and hi (16-31), in order.
inline __m512i bf16_of(__m512 lo, __m512 hi) { return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)); }

// [lo0, hi0, lo1, hi1, ...] in bf16: the pair layout vdpbf16ps and AMX's B tiles read.
inline __m512i bf16_pairs(__m512 lo, __m512 hi) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                       21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, bf16_of(lo, hi));
}

}  // namespace heed::kernels::cpu::avx512
