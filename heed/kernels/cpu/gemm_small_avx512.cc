// gemm_nt_small: AVX-512 (compiled with the AVX-512 flags; called only when the CPU has them).
#include <immintrin.h>

#include <cstdint>

#include "heed/kernels/cpu/gemm_small.h"

namespace heed::kernels::cpu {

namespace {

constexpr int kRows = 3;  // rows of A per tile: 3 x 8 = 24 accumulators + 3 A vectors + 1 B vector
constexpr int kCols = 8;  // rows of B per tile: their 8 sums fill one 256-bit store

// 16 lanes -> 8: lane x + lane x + 8.
// (A shuffle rather than _mm512_extractf32x8_ps, whose _mm256_undefined_ps trips GCC 12's
// -Wuninitialized.)
inline __m256 fold(__m512 v) {
  return _mm512_castps512_ps256(_mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(3, 2, 3, 2))));
}

// The lane sums of 8 accumulators, in order: s[j] = ((y0 + y1) + (y2 + y3)) + ((y4 + y5) + (y6 + y7))
// with y = fold(v[j]), the same association for every j.
inline __m256 sum8(const __m512* v) {
  const __m256 h01 = _mm256_hadd_ps(fold(v[0]), fold(v[1]));
  const __m256 h23 = _mm256_hadd_ps(fold(v[2]), fold(v[3]));
  const __m256 h45 = _mm256_hadd_ps(fold(v[4]), fold(v[5]));
  const __m256 h67 = _mm256_hadd_ps(fold(v[6]), fold(v[7]));
  const __m256 q0 = _mm256_hadd_ps(h01, h23);  // [s0..s3 of lanes 0-3 | s0..s3 of lanes 4-7]
  const __m256 q1 = _mm256_hadd_ps(h45, h67);  // the same for s4..s7
  return _mm256_add_ps(_mm256_permute2f128_ps(q0, q1, 0x20), _mm256_permute2f128_ps(q0, q1, 0x31));
}

// Rows [0, MR) of A against the 8 rows of B at brow[] (padding rows repeat a real one; only
// the first `cols` outputs are stored).
// BRows: brow(j) is the start of row j of B's block (a fixed stride for whole blocks, a
// table for the last, partial one).
struct Strided {
  const float* b;
  int64_t ldb;
  const float* operator()(int j) const { return b + j * ldb; }
};
struct Table {
  const float* const* rows;
  const float* operator()(int j) const { return rows[j]; }
};

template <int MR, class BRows>
void tile(int64_t k, const float* a, int64_t lda, BRows brow, float alpha, float beta, float* c, int64_t ldc,
          int cols) {
  __m512 acc[MR][kCols];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < kCols; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p + 16 <= k; p += 16) {
    __m512 av[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) av[i] = _mm512_loadu_ps(a + i * lda + p);
#pragma GCC unroll 8
    for (int j = 0; j < kCols; ++j) {
      __m512 bv = _mm512_loadu_ps(brow(j) + p);
      // One load per B vector, kept in a register for the MR FMAs (GCC otherwise folds the
      // load into each FMA: MR loads of the same vector, and the loop becomes load-bound).
      asm("" : "+v"(bv));
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(av[i], bv, acc[i][j]);
    }
  }
  if (p < k) {  // the last k % 16 columns; masked lanes load as zero and add nothing
    const __mmask16 mk = static_cast<__mmask16>((1u << (k - p)) - 1u);
    __m512 av[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) av[i] = _mm512_maskz_loadu_ps(mk, a + i * lda + p);
#pragma GCC unroll 8
    for (int j = 0; j < kCols; ++j) {
      const __m512 bv = _mm512_maskz_loadu_ps(mk, brow(j) + p);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(av[i], bv, acc[i][j]);
    }
  }
  const __mmask8 mc = static_cast<__mmask8>((1u << cols) - 1u);
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    __m256 s = _mm256_mul_ps(sum8(acc[i]), va);
    float* ci = c + i * ldc;
    if (beta != 0.0f) s = _mm256_fmadd_ps(vb, _mm256_maskz_loadu_ps(mc, ci), s);
    _mm256_mask_storeu_ps(ci, mc, s);
  }
}

template <class BRows>
void block(int64_t m, int64_t k, const float* a, int64_t lda, BRows brow, float alpha, float beta, float* c,
           int64_t ldc, int cols) {
  int64_t i0 = 0;
  for (; i0 + kRows <= m; i0 += kRows) tile<kRows>(k, a + i0 * lda, lda, brow, alpha, beta, c + i0 * ldc, ldc, cols);
  if (m - i0 == 2)
    tile<2>(k, a + i0 * lda, lda, brow, alpha, beta, c + i0 * ldc, ldc, cols);
  else if (m - i0 == 1)
    tile<1>(k, a + i0 * lda, lda, brow, alpha, beta, c + i0 * ldc, ldc, cols);
}

}  // namespace

void gemm_nt_small(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                   int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (alpha == 0.0f) {  // as BLAS: A and B are not read (an Inf or NaN there does not reach C)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  int64_t j0 = 0;
  for (; j0 + kCols <= n; j0 += kCols) block(m, k, a, lda, Strided{b + j0 * ldb, ldb}, alpha, beta, c + j0, ldc, kCols);
  if (j0 < n) {  // the last rows of B: padding rows repeat the last real one; their outputs are not stored
    const int cols = static_cast<int>(n - j0);
    const float* rows[kCols];
    for (int j = 0; j < kCols; ++j) rows[j] = b + (j0 + (j < cols ? j : cols - 1)) * ldb;
    block(m, k, a, lda, Table{rows}, alpha, beta, c + j0, ldc, cols);
  }
}

}  // namespace heed::kernels::cpu
