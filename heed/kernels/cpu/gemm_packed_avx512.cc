// gemm_packed: AVX-512 (compiled with the AVX-512 flags; called only when the CPU has them).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "heed/kernels/cpu/gemm_packed.h"
#include "heed/kernels/cpu/vec_avx512.h"

namespace heed::kernels::cpu {

namespace {

constexpr int kMr = 14;           // rows of C per register tile: 14 x 2 accumulators + 2 B vectors + 1 A broadcast
constexpr int kNr = 32;           // columns of C per register tile (two vectors)
constexpr int64_t kKc = 256;      // k per block: a 256 x 32 panel of B (32 KiB) stays in L1
constexpr int64_t kMc = 12 * kMr;  // rows per block of A (168 x 256 x 4 B = 168 KiB, in L2)
constexpr int64_t kNc = 1024;     // columns of B packed at a time (1 MiB)

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};

// Per-thread scratch, allocated on a thread's first product and reused (no allocation, no
// first touch of fresh pages, in the loop); null if the allocation failed.
float* scratch_b() {
  thread_local std::unique_ptr<float, FreeDeleter> buf(
      static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kKc * kNc)));
  return buf.get();
}
float* scratch_a() {
  thread_local std::unique_ptr<float, FreeDeleter> buf(
      static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kKc * kMc)));
  return buf.get();
}

using avx512::lanes;

// How a tile's sums reach C.
struct Store {
  float alpha, beta;
  bool first, last;  // first k block (beta applies) / last k block (bias and ReLU apply)
  const float* bias;  // at the tile's first column, or null
  bool relu;
  const float* relu_grad_of;  // at the tile's first element (C's layout), or null
};

// C[0:MR, 0:32] (masked to the tile's columns) from MR rows of op(A) and one packed panel of
// B over kc. kTransA: row i's element p of op(A) is a[i + p * lda] (contiguous in i);
// otherwise a[i * lda + p].
template <int MR, bool kTransA>
__attribute__((always_inline)) inline void tile(int64_t kc, const float* a, int64_t lda, const float* bp, float* c,
                                                int64_t ldc, const Store& s, __mmask16 m0, __mmask16 m1) {
  __m512 x[MR], y[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    x[i] = _mm512_setzero_ps();
    y[i] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
    bp += kNr;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(kTransA ? a[i] : a[i * lda]);
      x[i] = _mm512_fmadd_ps(av, b0, x[i]);
      y[i] = _mm512_fmadd_ps(av, b1, y[i]);
    }
    a += kTransA ? lda : 1;
  }
  const __m512 va = _mm512_set1_ps(s.alpha), vb = _mm512_set1_ps(s.beta), zero = _mm512_setzero_ps();
  __m512 bias0 = zero, bias1 = zero;
  if (s.last && s.bias) {
    bias0 = _mm512_maskz_loadu_ps(m0, s.bias);
    bias1 = _mm512_maskz_loadu_ps(m1, s.bias + 16);
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    __m512 r0 = _mm512_mul_ps(va, x[i]), r1 = _mm512_mul_ps(va, y[i]);
    if (!s.first) {
      r0 = _mm512_add_ps(r0, _mm512_maskz_loadu_ps(m0, ci));
      r1 = _mm512_add_ps(r1, _mm512_maskz_loadu_ps(m1, ci + 16));
    } else if (s.beta != 0.f) {
      r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
      r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
    }
    if (s.last) {
      if (s.bias) {
        r0 = _mm512_add_ps(r0, bias0);
        r1 = _mm512_add_ps(r1, bias1);
      }
      if (s.relu) {  // as heed::relu: v > 0 ? v : 0 (NaN -> 0: vmaxps returns its second operand)
        r0 = _mm512_maskz_max_ps(__mmask16(0xFFFF), r0, zero);
        r1 = _mm512_maskz_max_ps(__mmask16(0xFFFF), r1, zero);
      }
      if (s.relu_grad_of) {  // keep where the ReLU's output is > 0 (ordered compare: NaN drops)
        const float* gi = s.relu_grad_of + i * ldc;
        r0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m0, gi), zero, _CMP_GT_OQ), r0);
        r1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m1, gi + 16), zero, _CMP_GT_OQ), r1);
      }
    }
    _mm512_mask_storeu_ps(ci, m0, r0);
    _mm512_mask_storeu_ps(ci + 16, m1, r1);
  }
}

// One tile of `rows` <= 14 rows of a block against one panel.
template <bool kTransA>
void tile_rows(int64_t rows, int64_t kc, const float* a, int64_t lda, const float* bp, float* c, int64_t ldc,
               const Store& s, __mmask16 m0, __mmask16 m1) {
  switch (rows) {
#define HEED_TILE_CASE(R) \
  case R:                 \
    tile<R, kTransA>(kc, a, lda, bp, c, ldc, s, m0, m1); \
    break;
    HEED_TILE_CASE(1) HEED_TILE_CASE(2) HEED_TILE_CASE(3) HEED_TILE_CASE(4) HEED_TILE_CASE(5)
    HEED_TILE_CASE(6) HEED_TILE_CASE(7) HEED_TILE_CASE(8) HEED_TILE_CASE(9) HEED_TILE_CASE(10)
    HEED_TILE_CASE(11) HEED_TILE_CASE(12) HEED_TILE_CASE(13) HEED_TILE_CASE(14)
#undef HEED_TILE_CASE
    default:
      break;
  }
}

// Rows [0, mc) of a block against the packed panels of [0, nc) columns, tile by tile. Wide
// blocks run each row tile against every panel in turn (the tile's 14 rows of A stay in L1;
// the panels, at most 1 MiB, come from L2); narrow ones each panel against every row tile
// (the panel stays in L1, the block of A comes from L2). Measured on cold operands at the
// G2P shapes: the first order 4-6 % faster from 512 columns, no faster at 256.
constexpr int64_t kWideBlock = 512;

template <bool kTransA>
void block(int64_t mc, int64_t nc, int64_t kc, const float* a, int64_t lda, const float* bpack, float* c,
           int64_t ldc, Store s, const float* bias) {
  const auto a_at = [&](int64_t i) { return a + (kTransA ? i : i * lda); };
  const float* grad_of = s.relu_grad_of;  // at the block's first element
  const auto run = [&](int64_t i, int64_t jp) {
    const int64_t w = std::min<int64_t>(kNr, nc - jp);
    s.bias = bias ? bias + jp : nullptr;
    s.relu_grad_of = grad_of ? grad_of + i * ldc + jp : nullptr;
    tile_rows<kTransA>(std::min<int64_t>(kMr, mc - i), kc, a_at(i), lda, bpack + (jp / kNr) * kc * kNr,
                       c + i * ldc + jp, ldc, s, lanes(w), lanes(w - 16));
  };
  if (nc >= kWideBlock) {
    for (int64_t i = 0; i < mc; i += kMr)
      for (int64_t jp = 0; jp < nc; jp += kNr) run(i, jp);
  } else {
    for (int64_t jp = 0; jp < nc; jp += kNr)
      for (int64_t i = 0; i < mc; i += kMr) run(i, jp);
  }
}

// out[c * ldo + r] = in[r * ldi + c] for r, c < 16.
inline void transpose16(const float* in, int64_t ldi, float* out, int64_t ldo) {
  constexpr __mmask16 kAll = 0xFFFF;
  constexpr __mmask8 kAll8 = 0xFF;
  __m512 r[16], t[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(in + i * ldi);
  // Interleave 32-bit elements of row pairs, then 64-bit pairs: within each 128-bit lane,
  // t[4g + x] holds rows 4g..4g+3 at column x of the lane.
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_maskz_unpacklo_ps(kAll, r[i], r[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_ps(kAll, r[i], r[i + 1]);
  }
#pragma GCC unroll 4
  for (int g = 0; g < 16; g += 4) {
    r[g] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(kAll8, _mm512_castps_pd(t[g]), _mm512_castps_pd(t[g + 2])));
    r[g + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(kAll8, _mm512_castps_pd(t[g]), _mm512_castps_pd(t[g + 2])));
    r[g + 2] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(kAll8, _mm512_castps_pd(t[g + 1]), _mm512_castps_pd(t[g + 3])));
    r[g + 3] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(kAll8, _mm512_castps_pd(t[g + 1]), _mm512_castps_pd(t[g + 3])));
  }
  // Now r[4g + x], lane L (of 4) = rows 4g..4g+3 at column 4L + x. Gather the lanes: first
  // pairs of row groups, then all four.
#pragma GCC unroll 4
  for (int x = 0; x < 4; ++x) {
    t[x] = _mm512_maskz_shuffle_f32x4(kAll, r[x], r[4 + x], _MM_SHUFFLE(2, 0, 2, 0));       // groups 0,1: lanes 0,2
    t[4 + x] = _mm512_maskz_shuffle_f32x4(kAll, r[x], r[4 + x], _MM_SHUFFLE(3, 1, 3, 1));   // groups 0,1: lanes 1,3
    t[8 + x] = _mm512_maskz_shuffle_f32x4(kAll, r[8 + x], r[12 + x], _MM_SHUFFLE(2, 0, 2, 0));
    t[12 + x] = _mm512_maskz_shuffle_f32x4(kAll, r[8 + x], r[12 + x], _MM_SHUFFLE(3, 1, 3, 1));
  }
#pragma GCC unroll 4
  for (int x = 0; x < 4; ++x) {
    // column 4L + x for L = 0, 2 (from t[x], t[8 + x]) and L = 1, 3 (from t[4 + x], t[12 + x])
    _mm512_storeu_ps(out + (0 + x) * ldo, _mm512_maskz_shuffle_f32x4(kAll, t[x], t[8 + x], _MM_SHUFFLE(2, 0, 2, 0)));
    _mm512_storeu_ps(out + (8 + x) * ldo, _mm512_maskz_shuffle_f32x4(kAll, t[x], t[8 + x], _MM_SHUFFLE(3, 1, 3, 1)));
    _mm512_storeu_ps(out + (4 + x) * ldo, _mm512_maskz_shuffle_f32x4(kAll, t[4 + x], t[12 + x], _MM_SHUFFLE(2, 0, 2, 0)));
    _mm512_storeu_ps(out + (12 + x) * ldo, _mm512_maskz_shuffle_f32x4(kAll, t[4 + x], t[12 + x], _MM_SHUFFLE(3, 1, 3, 1)));
  }
}

// op(B)[p0 : p0 + kc, j0 : j0 + nc] -> panels [ceil(nc / 32)][kc][32], columns past nc zero.
void pack_b(bool trans_b, const float* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* out) {
  const int64_t panels = (nc + kNr - 1) / kNr;
  if (!trans_b) {
    // Rows of op(B) are rows of B: read each row once, front to back (B is often an
    // activation fresh from memory, and whole rows stream), 32 floats into each panel.
    for (int64_t p = 0; p < kc; ++p) {
      const float* src = b + (p0 + p) * ldb + j0;
      for (int64_t q = 0; q < panels; ++q) {
        const int64_t w = std::min<int64_t>(kNr, nc - q * kNr);
        float* o = out + (q * kc + p) * kNr;
        _mm512_store_ps(o, _mm512_maskz_loadu_ps(lanes(w), src + q * kNr));
        _mm512_store_ps(o + 16, _mm512_maskz_loadu_ps(lanes(w - 16), src + q * kNr + 16));
      }
    }
    return;
  }
  for (int64_t q = 0; q < panels; ++q) {  // column j of op(B) is row j of B: a transpose
    const int64_t w = std::min<int64_t>(kNr, nc - q * kNr);
    const float* rows = b + (j0 + q * kNr) * ldb + p0;
    float* o = out + q * kc * kNr;
    int64_t p = 0;
    if (w == kNr)  // whole panels: 16 x 16 blocks transposed in registers
      for (; p + 16 <= kc; p += 16)
        for (int half = 0; half < 2; ++half) transpose16(rows + half * 16 * ldb + p, ldb, o + p * kNr + half * 16, kNr);
    for (int64_t j = 0; j < kNr; ++j)  // the rest (and the zero columns past nc) one float at a time
      for (int64_t pp = p; pp < kc; ++pp) o[pp * kNr + j] = j < w ? rows[j * ldb + pp] : 0.f;
  }
}

}  // namespace

void gemm_scale_only(int64_t m, int64_t n, float beta, float* c, int64_t ldc, const GemmEpilogueF32& e) {
  for (int64_t i = 0; i < m; ++i) {
    float* ci = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) {
      float v = beta == 0.f ? 0.f : beta * ci[j];
      if (e.bias) v += e.bias[j];
      if (e.relu) v = v > 0.f ? v : 0.f;
      if (e.relu_grad_of) v = e.relu_grad_of[i * ldc + j] > 0.f ? v : 0.f;
      ci[j] = v;
    }
  }
}

bool gemm_packed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                 const GemmEpilogueF32& epilogue) {
  if (m <= 0 || n <= 0) return true;
  if (k <= 0 || alpha == 0.f) {
    gemm_scale_only(m, n, beta, c, ldc, epilogue);
    return true;
  }
  float* bbuf = scratch_b();
  float* abuf = trans_a ? scratch_a() : nullptr;  // only a transposed A is copied
  if (bbuf == nullptr || (trans_a && abuf == nullptr)) return false;
  for (int64_t p0 = 0; p0 < k; p0 += kKc) {
    const int64_t kc = std::min(kKc, k - p0);
    for (int64_t j0 = 0; j0 < n; j0 += kNc) {
      const int64_t nc = std::min(kNc, n - j0);
      pack_b(trans_b, b, ldb, p0, kc, j0, nc, bbuf);
      for (int64_t i0 = 0; i0 < m; i0 += kMc) {
        const int64_t mc = std::min(kMc, m - i0);
        const float* ablock = a + (trans_a ? p0 * lda + i0 : i0 * lda + p0);
        int64_t ablock_ld = lda;
        if (trans_a) {  // rows of op(A) are columns of A: copy them together, k-major
          for (int64_t p = 0; p < kc; ++p) std::memcpy(abuf + p * mc, ablock + p * lda, sizeof(float) * mc);
          ablock = abuf;
          ablock_ld = mc;
        }
        const Store s{alpha, beta, p0 == 0, p0 + kc == k, nullptr, epilogue.relu,
                      epilogue.relu_grad_of ? epilogue.relu_grad_of + i0 * ldc + j0 : nullptr};
        const float* bias = epilogue.bias ? epilogue.bias + j0 : nullptr;
        float* cblock = c + i0 * ldc + j0;
        if (trans_a) {
          block<true>(mc, nc, kc, ablock, ablock_ld, bbuf, cblock, ldc, s, bias);
        } else {
          block<false>(mc, nc, kc, ablock, ablock_ld, bbuf, cblock, ldc, s, bias);
        }
      }
    }
  }
  return true;
}

}  // namespace heed::kernels::cpu
