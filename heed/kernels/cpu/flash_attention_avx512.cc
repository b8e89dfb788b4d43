// The AVX-512 build of the fused attention kernels (flash_attention_impl.h with 16-lane
// vectors), plus the BF16 block products of FlashPrecision::kBF16 (vdpbf16ps or AMX tiles).
#include "heed/kernels/cpu/amx.h"
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
// The AMX engine reads the same K rows, Q^T pairs and V pairs as tiles; only P is
// transposed into bf16 rows for it.

namespace heed::kernels::cpu::flash_avx512 {
namespace {

using avx512::bf16_pairs;

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

// ---- AMX (amx.h): C tiles 0-3, A tiles 4-5, B tiles 6-7. ----

// C (fp32, ldc bytes) [+]= A B over `chunks` chunks of 32 reduction elements, for a
// (16*MT) x (16*NT) block at C: A rows are bf16 (lda bytes apart, chunk k at byte 64k);
// B is pair rows (16 per chunk, ldb bytes apart). Tiles: C in 0-3, A in 4-5, B in 6-7.
template <int MT, int NT>
void amx_block(int64_t chunks, const uint16_t* a, int64_t lda, const uint16_t* b, int64_t ldb,
               float* c, int64_t ldc, bool acc) {
  const char* ab = reinterpret_cast<const char*>(a);
  const char* bb = reinterpret_cast<const char*>(b);
  char* cb = reinterpret_cast<char*>(c);
  if (acc) {
    HEED_TILE_LOAD(0, cb, ldc);
    if constexpr (NT > 1) HEED_TILE_LOAD(1, cb + 64, ldc);
    if constexpr (MT > 1) HEED_TILE_LOAD(2, cb + 16 * ldc, ldc);
    if constexpr (MT > 1 && NT > 1) HEED_TILE_LOAD(3, cb + 16 * ldc + 64, ldc);
  } else {
    HEED_TILE_ZERO(0);
    if constexpr (NT > 1) HEED_TILE_ZERO(1);
    if constexpr (MT > 1) HEED_TILE_ZERO(2);
    if constexpr (MT > 1 && NT > 1) HEED_TILE_ZERO(3);
  }
  for (int64_t k = 0; k < chunks; ++k) {
    HEED_TILE_LOAD(4, ab + 64 * k, lda);
    if constexpr (MT > 1) HEED_TILE_LOAD(5, ab + 16 * lda + 64 * k, lda);
    HEED_TILE_LOAD(6, bb + 16 * k * ldb, ldb);
    if constexpr (NT > 1) HEED_TILE_LOAD(7, bb + 16 * k * ldb + 64, ldb);
    HEED_TILE_DP(0, 4, 6);
    if constexpr (NT > 1) HEED_TILE_DP(1, 4, 7);
    if constexpr (MT > 1) HEED_TILE_DP(2, 5, 6);
    if constexpr (MT > 1 && NT > 1) HEED_TILE_DP(3, 5, 7);
  }
  HEED_TILE_STORE(0, cb, ldc);
  if constexpr (NT > 1) HEED_TILE_STORE(1, cb + 64, ldc);
  if constexpr (MT > 1) HEED_TILE_STORE(2, cb + 16 * ldc, ldc);
  if constexpr (MT > 1 && NT > 1) HEED_TILE_STORE(3, cb + 16 * ldc + 64, ldc);
}

// C [M, N] (fp32, ldc floats) [+]= A [M, 32*chunks] (bf16 rows, lda elements) times B
// (pair rows, ldb pairs); M and N multiples of 16.
void amx_gemm(int64_t M, int64_t N, int64_t chunks, const uint16_t* a, int64_t lda,
              const uint16_t* b, int64_t ldb, float* c, int64_t ldc, bool acc) {
  for (int64_t m0 = 0; m0 < M; m0 += 32) {
    const bool two_m = m0 + 16 < M;
    for (int64_t n0 = 0; n0 < N; n0 += 32) {
      const bool two_n = n0 + 16 < N;
      const uint16_t* ap = a + m0 * lda;
      const uint16_t* bp = b + 2 * n0;
      float* cp = c + m0 * ldc + n0;
      const int64_t la = 2 * lda, lb = 4 * ldb, lc = 4 * ldc;
      if (two_m && two_n)
        amx_block<2, 2>(chunks, ap, la, bp, lb, cp, lc, acc);
      else if (two_m)
        amx_block<2, 1>(chunks, ap, la, bp, lb, cp, lc, acc);
      else if (two_n)
        amx_block<1, 2>(chunks, ap, la, bp, lb, cp, lc, acc);
      else
        amx_block<1, 1>(chunks, ap, la, bp, lb, cp, lc, acc);
    }
  }
}

// P rows in bf16 from P^T: dst[r*ld + j] = bf16(st[j*Rp + r]) for r < Rp, j < ld (keys
// Bn..ld are 0); ld is a multiple of 32.
void transpose_to_bf16_rows(uint16_t* dst, int64_t ld, const float* st, int64_t Bn, int Rp) {
  for (int64_t j0 = 0; j0 < ld; j0 += 32) {
    for (int r0 = 0; r0 < Rp; r0 += 16) {
      __m512 lo[16], hi[16];
      for (int x = 0; x < 16; ++x) {
        lo[x] = j0 + x < Bn ? _mm512_loadu_ps(st + (j0 + x) * Rp + r0) : _mm512_setzero_ps();
        hi[x] = j0 + 16 + x < Bn ? _mm512_loadu_ps(st + (j0 + 16 + x) * Rp + r0) : _mm512_setzero_ps();
      }
      V::transpose(lo);
      V::transpose(hi);
      for (int x = 0; x < 16; ++x)
        _mm512_storeu_si512(dst + (r0 + x) * ld + j0, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi[x], lo[x])));
    }
  }
}

void bf16_thread_begin(const Ctx& c) {
  if (c.amx) amx::configure_full_tiles();
}

void bf16_thread_end(const Ctx& c) {
  if (c.amx) amx::release_tiles();
}

void bf16_scores(const Ctx& c, FwdScratch& s, const float* kbase, int64_t j0, int64_t Bn, int Rp,
                 bool q_ready) {
  const int64_t D = c.D, pairs = (D + 1) / 2, ldk = round_up(D, 32);
  // Q^T (fp32 [D, Rp], packed by the caller) -> qt16 [pairs, Rp, 2], once per row block;
  // AMX reads whole chunks of 16 pairs, so pairs up to ldk / 2 are zero.
  if (!q_ready) {
    pair_rows(s.qt16, s.qt, D, Rp);
    if (c.amx) std::memset(s.qt16 + pairs * Rp * 2, 0, sizeof(uint16_t) * (ldk / 2 - pairs) * Rp * 2);
  }
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
      for (int64_t d = D; d < ldk; ++d) out[d] = 0;
    }
  }
  if (c.amx) {
    // Key rows Bn..16k hold stale (finite or not) values: their score rows are never read.
    amx_gemm(round_up(Bn, 16), Rp, ldk / 32, s.k16, ldk, s.qt16, Rp, s.st, Rp, false);
    return;
  }
  // S^T [Bn, Rp] = K Q^T: A(m = key, p) is the pair p of key row m.
  gemm16(Bn, Rp, pairs, reinterpret_cast<const int32_t*>(s.k16), ldk / 2, 1, s.qt16, 2 * Rp, s.st,
         Rp, false);
}

void bf16_pv(const Ctx& c, FwdScratch& s, const float* vbase, int64_t j0, int64_t Bn, int R,
             int Rp) {
  const int64_t Dvp = c.Dvp, pairs = (Bn + 1) / 2;
  const float* vr = vbase + j0 * c.vs[2];
  if (c.vs[3] == 1) {
    // Straight from V's rows: pairs of rows (2q, 2q+1) -> v16 [pairs, Dvp, 2].
    for (int64_t q = 0; q < pairs; ++q) {
      const float* lo = vr + 2 * q * c.vs[2];
      const bool has_hi = 2 * q + 1 < Bn;
      for (int64_t d = 0; d < Dvp; d += 16) {
        const int n = static_cast<int>(imin(16, c.Dv - d));
        const __m512 h = has_hi ? V::load_n(lo + c.vs[2] + d, n) : _mm512_setzero_ps();
        _mm512_storeu_si512(s.v16 + (q * Dvp + d) * 2, bf16_pairs(V::load_n(lo + d, n), h));
      }
    }
  } else {
    pack_rows(s.vp, Dvp, vr, Bn, c.vs[2], c.Dv, c.vs[3], 1.0f);
    pair_rows(s.v16, s.vp, Bn, Dvp);  // [pairs, Dvp, 2]
  }
  if (c.amx) {
    // O [R, Dvp] += P V with P as bf16 rows [Rp, ld] and V pairs zero beyond the keys.
    const int64_t ld = round_up(Bn, 32);
    std::memset(s.v16 + pairs * Dvp * 2, 0, sizeof(uint16_t) * (ld / 2 - pairs) * Dvp * 2);
    transpose_to_bf16_rows(s.p16, ld, s.st, Bn, Rp);
    amx_gemm(round_up(R, 16), Dvp, ld / 32, s.p16, ld, s.v16, Dvp, s.o, Dvp, true);
    return;
  }
  pair_rows(s.p16, s.st, Bn, Rp);   // [pairs, Rp, 2]: P^T rows (keys) paired
  // O [R, Dvp] += P V: A(m = row, p) is the pair (P[row, 2p], P[row, 2p+1]) at p16[p, row].
  gemm16(R, Dvp, pairs, reinterpret_cast<const int32_t*>(s.p16), 1, Rp, s.v16, 2 * Dvp, s.o, Dvp,
         true);
}

}  // namespace
}  // namespace heed::kernels::cpu::flash_avx512
