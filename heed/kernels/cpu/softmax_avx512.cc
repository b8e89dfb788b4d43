// AVX-512 softmax, log-softmax and cross-entropy row kernels (compiled with -mavx512f etc.).
// exp is a range-reduced polynomial: x = n ln2 + r, |r| <= ln2 / 2, exp(r) by its Taylor series
// to degree 7 (truncation error < 4e-9 relative), times 2^n with vscalefps (which flushes
// results below the smallest denormal to 0, so exp(-inf) is exactly 0).
#include "heed/kernels/cpu/softmax_avx512.h"

// GCC 12 reports its own _mm512_undefined_* placeholders inside avx512fintrin.h as
// (maybe-)uninitialized when intrinsics inline here; the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <cmath>

#include "heed/kernels/cpu/vec_avx512.h"  // lanes(): the mask of a row's tail

namespace heed::kernels::cpu {

namespace avx512 {

namespace {

// Only builtins and C functions here: an out-of-line copy of a standard-library template
// compiled with AVX-512 flags could be picked by the linker for callers on other CPUs.
constexpr float kNegInf = -__builtin_inff();

inline __m512 exp16(__m512 x) {
  // Clamp from below (exp(-104) < the smallest denormal); max(c, x) keeps NaN in x.
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n ln2 in two steps (ln2 = hi + lo, hi exact in 16 bits) so r is accurate.
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723212e-6f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// The low and high eight floats of a vector.
inline __m256 low8(__m512 v) { return _mm512_castps512_ps256(v); }
inline __m256 high8(__m512 v) { return _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(3, 2, 3, 2))); }

// Adds 16 floats into two 8-lane double accumulators.
inline void add_pd(__m512d& lo, __m512d& hi, __m512 v) {
  lo = _mm512_add_pd(lo, _mm512_cvtps_pd(low8(v)));
  hi = _mm512_add_pd(hi, _mm512_cvtps_pd(high8(v)));
}

inline double reduce_pd(__m512d lo, __m512d hi) { return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi)); }

inline float row_max(const float* x, int64_t n) {
  const __m512 neg_inf = _mm512_set1_ps(kNegInf);
  __m512 m = neg_inf;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) m = _mm512_max_ps(_mm512_loadu_ps(x + i), m);
  if (i < n) m = _mm512_max_ps(_mm512_mask_loadu_ps(neg_inf, lanes(n - i), x + i), m);
  return _mm512_reduce_max_ps(m);
}

}  // namespace

void exp_row(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
  if (i < n) _mm512_mask_storeu_ps(y + i, lanes(n - i), exp16(_mm512_maskz_loadu_ps(lanes(n - i), x + i)));
}

void softmax_row(const float* x, float* y, int64_t n, bool log) {
  const float m = row_max(x, n);
  if (m == kNegInf) {  // every key masked
    for (int64_t i = 0; i < n; ++i) y[i] = log ? m : 0.0f;
    return;
  }
  const __m512 vm = _mm512_set1_ps(m);
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
    if (!log) _mm512_storeu_ps(y + i, e);
    add_pd(lo, hi, e);
  }
  const __mmask16 tail = i < n ? lanes(n - i) : 0;
  if (tail) {
    const __m512 e = _mm512_maskz_mov_ps(tail, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), vm)));
    if (!log) _mm512_mask_storeu_ps(y + i, tail, e);
    add_pd(lo, hi, e);
  }
  const double s = reduce_pd(lo, hi);
  if (log) {
    // (x - m) is exact; subtracting a rounded m + log(s) would not be.
    const __m512 ls = _mm512_set1_ps(static_cast<float>(std::log(s)));
    for (i = 0; i + 16 <= n; i += 16)
      _mm512_storeu_ps(y + i, _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm), ls));
    if (tail) _mm512_mask_storeu_ps(y + i, tail, _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), vm), ls));
  } else {
    const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / s));
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), inv));
    if (tail) _mm512_mask_storeu_ps(y + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, y + i), inv));
  }
}

void softmax_backward_row(const float* y, const float* g, float* gx, int64_t n, bool log) {
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  int64_t i = 0;
  const __mmask16 tail = n % 16 ? lanes(n % 16) : 0;
  const int64_t body = n - n % 16;
  if (log) {
    // g_x = g - exp(y) * sum(g); zero for an all -inf row (no dependence on x).
    if (row_max(y, n) == kNegInf) {
      for (int64_t j = 0; j < n; ++j) gx[j] = 0.0f;
      return;
    }
    for (; i < body; i += 16) add_pd(lo, hi, _mm512_loadu_ps(g + i));
    if (tail) add_pd(lo, hi, _mm512_maskz_loadu_ps(tail, g + i));
    const __m512 s = _mm512_set1_ps(static_cast<float>(reduce_pd(lo, hi)));
    for (i = 0; i < body; i += 16)
      _mm512_storeu_ps(gx + i, _mm512_fnmadd_ps(exp16(_mm512_loadu_ps(y + i)), s, _mm512_loadu_ps(g + i)));
    if (tail)
      _mm512_mask_storeu_ps(gx + i, tail,
                            _mm512_fnmadd_ps(exp16(_mm512_maskz_loadu_ps(tail, y + i)), s, _mm512_maskz_loadu_ps(tail, g + i)));
  } else {
    // g_x = y * (g - <g, y>), the dot product in double.
    for (; i < body; i += 16) {
      const __m512 gv = _mm512_loadu_ps(g + i), yv = _mm512_loadu_ps(y + i);
      lo = _mm512_fmadd_pd(_mm512_cvtps_pd(low8(gv)), _mm512_cvtps_pd(low8(yv)), lo);
      hi = _mm512_fmadd_pd(_mm512_cvtps_pd(high8(gv)), _mm512_cvtps_pd(high8(yv)), hi);
    }
    double dot = reduce_pd(lo, hi);
    for (int64_t j = body; j < n; ++j) dot += static_cast<double>(g[j]) * y[j];
    const __m512 d = _mm512_set1_ps(static_cast<float>(dot));
    for (i = 0; i < body; i += 16)
      _mm512_storeu_ps(gx + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), _mm512_sub_ps(_mm512_loadu_ps(g + i), d)));
    if (tail)
      _mm512_mask_storeu_ps(gx + i, tail,
                            _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, y + i), _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, g + i), d)));
  }
}

RowStats logsumexp_row(const float* x, int64_t n) {
  const float m = row_max(x, n);
  const __m512 vm = _mm512_set1_ps(m);
  __m512d slo = _mm512_setzero_pd(), shi = _mm512_setzero_pd(), xlo = _mm512_setzero_pd(), xhi = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    add_pd(slo, shi, exp16(_mm512_sub_ps(v, vm)));
    add_pd(xlo, xhi, v);
  }
  if (i < n) {
    const __mmask16 tail = lanes(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(tail, x + i);
    add_pd(slo, shi, _mm512_maskz_mov_ps(tail, exp16(_mm512_sub_ps(v, vm))));
    add_pd(xlo, xhi, v);
  }
  return {m, std::log(reduce_pd(slo, shi)), reduce_pd(xlo, xhi)};
}

void softmax_minus_row(const float* x, float max, float log_sum, float k, float off, float* g, int64_t n) {
  const __m512 vm = _mm512_set1_ps(max), ls = _mm512_set1_ps(log_sum), vk = _mm512_set1_ps(k), voff = _mm512_set1_ps(off);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 p = exp16(_mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm), ls));
    _mm512_storeu_ps(g + i, _mm512_mul_ps(vk, _mm512_sub_ps(p, voff)));
  }
  if (i < n) {
    const __mmask16 tail = lanes(n - i);
    const __m512 p = exp16(_mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), vm), ls));
    _mm512_mask_storeu_ps(g + i, tail, _mm512_mul_ps(vk, _mm512_sub_ps(p, voff)));
  }
}

}  // namespace avx512
}  // namespace heed::kernels::cpu
