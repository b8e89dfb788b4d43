// The AVX-512 build of the fused attention kernels (flash_attention_impl.h with 16-lane
// vectors), plus the BF16 block products (vdpbf16ps) of FlashPrecision::kBF16.
#include "heed/kernels/cpu/vec_avx512.h"

#define HEED_FLASH_NS flash_avx512
#define HEED_FLASH_BF16 1

namespace heed::kernels::cpu::flash_avx512 {
using V = avx512::Vec;
struct Cfg {
  static constexpr int kMr = 6;  // 6 x 4 zmm accumulators (4x4, 8x2, 5x4, 7x3 measured no better)
  static constexpr int kNv = 4;
  static constexpr int kBlockRows = 64;
  static constexpr int kBlockKeys = 64;  // 96 and 128 measured no better
};
}  // namespace heed::kernels::cpu::flash_avx512

#include "heed/kernels/cpu/flash_attention_impl.h"

// ---------------------------------------------------------------------------------------
// BF16 block products. vdpbf16ps adds, per fp32 lane, the two products of a pair of bf16
// values: the reduction dimension is packed in pairs (d, d+1) or (j, j+1). Inputs are
// converted (round to nearest even) per block; accumulation stays fp32.
//   S^T [keys, rows] = K Q^T : broadcast a K pair, multiply 16 rows' Q pairs (qt16).
//   O [rows, Dv] += P V      : broadcast a P pair, multiply 16 columns' V pairs (v16).

namespace heed::kernels::cpu::flash_avx512 {
namespace {

// [lo0, hi0, lo1, hi1, ...] from two fp32 vectors: the pair layout vdpbf16ps reads.
inline __m512i bf16_pairs(__m512 lo, __m512 hi) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                       23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i both = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));  // [lo | hi]
  return _mm512_permutexvar_epi16(idx, both);
}

// Scalar fp32 -> bf16, round to nearest even (as vcvtne2ps2bf16), NaN kept quiet.
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// C[M, N] (+)= A B in bf16 pairs: A(m, p) is the 32-bit pair a[m*am + p*ak]; B row p holds
// N pairs (2N bf16) at b + p*ldb; N is a multiple of 16.
template <int MR, int NV>
void tile16(int64_t P, const int32_t* a, int64_t am, int64_t ak, const uint16_t* b, int64_t ldb,
            float* c, int64_t ldc, bool acc) {
  __m512 r[MR][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 16
    for (int n = 0; n < NV; ++n) r[m][n] = acc ? _mm512_loadu_ps(c + m * ldc + n * 16) : _mm512_setzero_ps();
  for (int64_t p = 0; p < P; ++p) {
    __m512bh bv[NV];
#pragma GCC unroll 16
    for (int n = 0; n < NV; ++n)
      bv[n] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + p * ldb + n * 32));
    const int32_t* ap = a + p * ak;
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const __m512bh av = reinterpret_cast<__m512bh>(_mm512_set1_epi32(ap[m * am]));
#pragma GCC unroll 16
      for (int n = 0; n < NV; ++n) r[m][n] = _mm512_dpbf16_ps(r[m][n], av, bv[n]);
    }
  }
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 16
    for (int n = 0; n < NV; ++n) _mm512_storeu_ps(c + m * ldc + n * 16, r[m][n]);
}

template <int MR, int NV>
void tile16_nv(int nv, int64_t P, const int32_t* a, int64_t am, int64_t ak, const uint16_t* b,
               int64_t ldb, float* c, int64_t ldc, bool acc) {
  if (nv == NV) {
    tile16<MR, NV>(P, a, am, ak, b, ldb, c, ldc, acc);
  } else if constexpr (NV > 1) {
    tile16_nv<MR, NV - 1>(nv, P, a, am, ak, b, ldb, c, ldc, acc);
  }
}

template <int MR>
void tile16_any(int mr, int nv, int64_t P, const int32_t* a, int64_t am, int64_t ak,
                const uint16_t* b, int64_t ldb, float* c, int64_t ldc, bool acc) {
  if (mr == MR) {
    tile16_nv<MR, Cfg::kNv>(nv, P, a, am, ak, b, ldb, c, ldc, acc);
  } else if constexpr (MR > 1) {
    tile16_any<MR - 1>(mr, nv, P, a, am, ak, b, ldb, c, ldc, acc);
  }
}

void gemm16(int64_t M, int64_t N, int64_t P, const int32_t* a, int64_t am, int64_t ak,
            const uint16_t* b, int64_t ldb, float* c, int64_t ldc, bool acc) {
  constexpr int64_t kNb = Cfg::kNv * 16;
  for (int64_t n0 = 0; n0 < N; n0 += kNb) {
    const int nv = static_cast<int>(imin(kNb, N - n0) / 16);
    for (int64_t m0 = 0; m0 < M; m0 += Cfg::kMr) {
      const int mr = static_cast<int>(imin(Cfg::kMr, M - m0));
      const int32_t* ap = a + m0 * am;
      // B holds pairs: column n0 of C is uint16 offset 2 * n0 in a B row.
      if (mr == Cfg::kMr && nv == Cfg::kNv)
        tile16<Cfg::kMr, Cfg::kNv>(P, ap, am, ak, b + 2 * n0, ldb, c + m0 * ldc + n0, ldc, acc);
      else
        tile16_any<Cfg::kMr>(mr, nv, P, ap, am, ak, b + 2 * n0, ldb, c + m0 * ldc + n0, ldc, acc);
    }
  }
}

// Pairs of fp32 rows (2q, 2q+1) of src [rows, ld] -> dst [ceil(rows/2), ld, 2] bf16; a
// missing last odd row is zero. ld is a multiple of 16.
void pair_rows(uint16_t* dst, const float* src, int64_t rows, int64_t ld) {
  for (int64_t q = 0; 2 * q < rows; ++q) {
    const float* lo = src + 2 * q * ld;
    const float* hi = lo + ld;
    const bool has_hi = 2 * q + 1 < rows;
    for (int64_t x = 0; x < ld; x += 16) {
      const __m512 h = has_hi ? _mm512_loadu_ps(hi + x) : _mm512_setzero_ps();
      _mm512_storeu_si512(dst + (q * ld + x) * 2, bf16_pairs(_mm512_loadu_ps(lo + x), h));
    }
  }
}

void bf16_scores(const Ctx& c, FwdScratch& s, const float* kbase, int64_t j0, int64_t Bn, int Rp,
                 bool q_ready) {
  const int64_t D = c.D, pairs = (D + 1) / 2, ldk = round_up(D, 32);
  // Q^T (fp32 [D, Rp], packed by the caller) -> qt16 [pairs, Rp, 2], once per row block.
  if (!q_ready) pair_rows(s.qt16, s.qt, D, Rp);
  // K rows of the block -> k16 [Bn, ldk] bf16, zero beyond D.
  const float* kr = kbase + j0 * c.ks[2];
  for (int64_t jj = 0; jj < Bn; ++jj) {
    const float* row = kr + jj * c.ks[2];
    uint16_t* out = s.k16 + jj * ldk;
    if (c.ks[3] == 1) {
      for (int64_t d = 0; d < D; d += 32) {
        const int n_lo = static_cast<int>(imin(16, D - d)), n_hi = static_cast<int>(imin(16, D - d - 16));
        const __m512 lo = V::load_n(row + d, n_lo);
        const __m512 hi = n_hi > 0 ? V::load_n(row + d + 16, n_hi) : _mm512_setzero_ps();
        _mm512_storeu_si512(out + d, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
      }
    } else {
      for (int64_t d = 0; d < D; ++d) out[d] = to_bf16(row[d * c.ks[3]]);
      for (int64_t d = D; d < 2 * pairs; ++d) out[d] = 0;
    }
  }
  // S^T [Bn, Rp] = K Q^T: A(m = key, p) is the pair p of key row m.
  gemm16(Bn, Rp, pairs, reinterpret_cast<const int32_t*>(s.k16), ldk / 2, 1, s.qt16, 2 * Rp, s.st,
         Rp, false);
}

void bf16_pv(const Ctx& c, FwdScratch& s, const float* vbase, int64_t j0, int64_t Bn, int R,
             int Rp) {
  const int64_t Dvp = c.Dvp, pairs = (Bn + 1) / 2;
  pack_rows(s.vp, Dvp, vbase + j0 * c.vs[2], Bn, c.vs[2], c.Dv, c.vs[3], 1.0f);
  pair_rows(s.v16, s.vp, Bn, Dvp);  // [pairs, Dvp, 2]
  pair_rows(s.p16, s.st, Bn, Rp);   // [pairs, Rp, 2]: P^T rows (keys) paired
  // O [R, Dvp] += P V: A(m = row, p) is the pair (P[row, 2p], P[row, 2p+1]) at p16[p, row].
  gemm16(R, Dvp, pairs, reinterpret_cast<const int32_t*>(s.p16), 1, Rp, s.v16, 2 * Dvp, s.o, Dvp,
         true);
}

}  // namespace
}  // namespace heed::kernels::cpu::flash_avx512
