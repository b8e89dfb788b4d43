// Internal: the fused attention algorithm, written once over a SIMD vector type `V` and a
// tile configuration `Cfg` and compiled once per instruction set by its includers.
// (flash_attention_{scalar,avx2,avx512}.cc define HEED_FLASH_NS, V and Cfg, then include.)
//
// Layout: scores are kept transposed, S^T [keys, rows], so the softmax statistics of a
// block are vertical vector operations (no horizontal reductions) and K is never packed:
// S^T = K Q^T reads K in place through its strides as the broadcast operand.
#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "heed/kernels/cpu/flash_attention_isa.h"
#include "heed/tensor/error.h"

namespace heed::kernels::cpu::HEED_FLASH_NS {
namespace {  // internal linkage: nothing here may be merged with another ISA's copy

using Reg = V::Reg;
constexpr int kW = V::kWidth;
constexpr int kBr = Cfg::kBlockRows;  // query rows per block (a multiple of kW)
constexpr int kBc = Cfg::kBlockKeys;  // keys per block
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kMaxFloat = std::numeric_limits<float>::max();

static_assert(kBr % kW == 0, "block rows must be a multiple of the vector width");

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
inline int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

// ---------------------------------------------------------------------------------------
// Problem description, copied out of FlashParams once per call.

struct Ctx {
  int64_t B, Hq, Hkv, T, S, D, Dv, group, Dp, Dvp;
  const float* q;
  int64_t qs[4];
  const float* k;
  int64_t ks[4];
  const float* v;
  int64_t vs[4];
  float* o;
  int64_t os[4];
  float* lse;
  float scale;
  float q_factor;   // Q is packed multiplied by this
  bool log2_units;  // K Q^T gives scores in log2 units (softmax without additive mask)
  bool sigmoid;
  const int64_t* key_len;
  bool causal;
  int64_t off, wl, wr;
  const uint8_t* bm;
  int64_t bms[4];
  const float* am;
  int64_t ams[4];
  bool explicit_mask;
  bool dropout;
  float drop_p, drop_scale;
  uint64_t seed, stream;
  bool blas;
  bool amx;  // bf16 products on AMX tiles (else vdpbf16ps)
};

Ctx make_ctx(const FlashParams& p) {
  Ctx c{};
  c.B = p.batch;
  c.Hq = p.q_heads;
  c.Hkv = p.kv_heads;
  c.T = p.q_len;
  c.S = p.kv_len;
  c.D = p.head_dim;
  c.Dv = p.v_head_dim;
  c.group = p.q_heads / p.kv_heads;
  c.Dp = round_up(c.D, kW);
  c.Dvp = round_up(c.Dv, kW);
  for (int x = 0; x < 4; ++x) {
    c.qs[x] = p.q_strides[x];
    c.ks[x] = p.k_strides[x];
    c.vs[x] = p.v_strides[x];
    c.os[x] = p.out_strides[x];
    c.bms[x] = p.mask.bool_strides[x];
    c.ams[x] = p.mask.additive_strides[x];
  }
  c.q = p.q;
  c.k = p.k;
  c.v = p.v;
  c.o = p.out;
  c.lse = p.lse;
  c.scale = p.scale;
  c.sigmoid = p.weighting == AttentionWeighting::kSigmoid;
  c.am = p.mask.additive_mask;
  c.bm = p.mask.bool_mask;
  c.log2_units = !c.sigmoid && c.am == nullptr;
  c.q_factor = c.log2_units ? p.scale * kLog2e : p.scale;
  c.key_len = p.mask.key_lengths;
  c.causal = p.mask.causal;
  c.off = p.mask.causal_offset;
  c.wl = p.mask.window_left;
  c.wr = p.mask.window_right;
  c.explicit_mask = c.am != nullptr || c.bm != nullptr;
  c.dropout = p.dropout.p > 0.0f;
  c.drop_p = p.dropout.p;
  c.drop_scale = c.dropout ? 1.0f / (1.0f - p.dropout.p) : 1.0f;
  c.seed = p.dropout.seed;
  c.stream = p.dropout.stream;
  c.blas = p.gemm == FlashGemm::kBlas;
  c.amx = p.precision == FlashPrecision::kBF16 && p.bf16_engine == FlashBf16Engine::kAmx;
  return c;
}

// Keys [lo, hi) allowed for query row i of batch b by key lengths, causality and windows
// (explicit masks come on top, element by element). Empty: lo == hi.
inline void key_interval(const Ctx& c, int64_t b, int64_t i, int64_t* lo, int64_t* hi) {
  int64_t l = 0, h = c.S;
  if (c.key_len != nullptr) h = imin(h, c.key_len[b]);
  if (c.causal) h = imin(h, i + c.off + 1);
  if (c.wl >= 0) l = imax(l, i + c.off - c.wl);
  if (c.wr >= 0) h = imin(h, i + c.off + c.wr + 1);
  if (h < l) h = l;
  *lo = l;
  *hi = h;
}

// The rows of one block: row r is query row ri[r] of head rh[r]; its keys are [lo[r], hi[r]).
struct Rows {
  int64_t* rh;
  int64_t* ri;
  int64_t* lo;
  int64_t* hi;
  int R;   // rows
  int Rp;  // rows rounded up to the vector width: the leading dimension of S^T
};

// Fills intervals and returns the union [*jlo, *jhi) of the rows' keys within [kbeg, kend).
inline void rows_key_range(const Ctx& c, int64_t b, Rows& rows, int64_t kbeg, int64_t kend,
                           int64_t* jlo, int64_t* jhi) {
  int64_t a = kend, z = kbeg;
  for (int r = 0; r < rows.R; ++r) {
    key_interval(c, b, rows.ri[r], &rows.lo[r], &rows.hi[r]);
    int64_t l = imax(rows.lo[r], kbeg), h = imin(rows.hi[r], kend);
    if (l < h) {
      a = imin(a, l);
      z = imax(z, h);
    }
  }
  *jlo = a;
  *jhi = a < z ? z : a;
}

enum class Cover { kNone, kFull, kPartial };

// How the structured masks and explicit masks cover the key block [j0, j1) for these rows.
inline Cover classify(const Ctx& c, const Rows& rows, int64_t j0, int64_t j1) {
  bool any = false, all = true;
  for (int r = 0; r < rows.R; ++r) {
    if (rows.lo[r] < j1 && rows.hi[r] > j0) any = true;
    if (rows.lo[r] > j0 || rows.hi[r] < j1) all = false;
  }
  if (!any) return Cover::kNone;
  return all && !c.explicit_mask ? Cover::kFull : Cover::kPartial;
}

// ---------------------------------------------------------------------------------------
// Micro-kernels: C[M, N] (+)= A[M, K] B[K, N], with A read by broadcasts through any
// strides, A(m, k) = a[m*am + k*ak], B read as vectors from rows at ldb (each row readable
// up to N rounded up to kW), C rows at ldc with unit column stride (exact width N).

// r[m][n] += sum over k of A(m, k) B(k, n-th vector): the register tile every micro-kernel
// (tile, tile_epi) runs.
template <int MR, int NV>
[[gnu::always_inline]] inline void accumulate(int64_t K, const float* a, int64_t am, int64_t ak, const float* b,
                                              int64_t ldb, Reg (&r)[MR][NV]) {
  // Unrolled twice: measured +2-5% over no unrolling and over unrolling 4 times.
#pragma GCC unroll 2
  for (int64_t k = 0; k < K; ++k) {
    Reg bv[NV];
#pragma GCC unroll 16
    for (int n = 0; n < NV; ++n) bv[n] = V::load(b + k * ldb + n * kW);
    const float* ap = a + k * ak;
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      Reg av = V::set1(ap[m * am]);
#pragma GCC unroll 16
      for (int n = 0; n < NV; ++n) r[m][n] = V::fma(av, bv[n], r[m][n]);
    }
  }
}

template <int MR, int NV>
void tile(int64_t K, const float* a, int64_t am, int64_t ak, const float* b, int64_t ldb,
          float* c, int64_t ldc, bool acc, int last) {
  Reg r[MR][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
#pragma GCC unroll 16
    for (int n = 0; n < NV; ++n) {
      const float* cp = c + m * ldc + n * kW;
      if (!acc)
        r[m][n] = V::zero();
      else if (n == NV - 1 && last < kW)
        r[m][n] = V::load_n(cp, last);
      else
        r[m][n] = V::load(cp);
    }
  }
  accumulate<MR, NV>(K, a, am, ak, b, ldb, r);
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m) {
#pragma GCC unroll 16
    for (int n = 0; n < NV; ++n) {
      float* cp = c + m * ldc + n * kW;
      if (n == NV - 1 && last < kW)
        V::store_n(cp, r[m][n], last);
      else
        V::store(cp, r[m][n]);
    }
  }
}

template <int MR, int NV>
void tile_nv(int nv, int64_t K, const float* a, int64_t am, int64_t ak, const float* b,
             int64_t ldb, float* c, int64_t ldc, bool acc, int last) {
  if (nv == NV) {
    tile<MR, NV>(K, a, am, ak, b, ldb, c, ldc, acc, last);
  } else if constexpr (NV > 1) {
    tile_nv<MR, NV - 1>(nv, K, a, am, ak, b, ldb, c, ldc, acc, last);
  }
}

template <int MR>
void tile_any(int mr, int nv, int64_t K, const float* a, int64_t am, int64_t ak, const float* b,
              int64_t ldb, float* c, int64_t ldc, bool acc, int last) {
  if (mr == MR) {
    tile_nv<MR, Cfg::kNv>(nv, K, a, am, ak, b, ldb, c, ldc, acc, last);
  } else if constexpr (MR > 1) {
    tile_any<MR - 1>(mr, nv, K, a, am, ak, b, ldb, c, ldc, acc, last);
  }
}

void gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t am, int64_t ak,
          const float* b, int64_t ldb, float* c, int64_t ldc, bool acc) {
  constexpr int64_t kNb = Cfg::kNv * kW;
  for (int64_t n0 = 0; n0 < N; n0 += kNb) {
    const int64_t nn = imin(kNb, N - n0);
    const int nv = static_cast<int>(ceil_div(nn, kW));
    const int last = static_cast<int>(nn - (nv - 1) * kW);
    for (int64_t m0 = 0; m0 < M; m0 += Cfg::kMr) {
      const int mr = static_cast<int>(imin(Cfg::kMr, M - m0));
      const float* ap = a + m0 * am;
      float* cp = c + m0 * ldc + n0;
      if (mr == Cfg::kMr && nv == Cfg::kNv)
        tile<Cfg::kMr, Cfg::kNv>(K, ap, am, ak, b + n0, ldb, cp, ldc, acc, last);
      else
        tile_any<Cfg::kMr>(mr, nv, K, ap, am, ak, b + n0, ldb, cp, ldc, acc, last);
    }
  }
}

// C[M, N] = A B (N a multiple of kW) tile by tile as gemm() does, except that each tile's
// registers go to an epilogue instead of memory: epi.template take<MR, NV>(r, m0, v0) gets
// rows [m0, m0 + MR) and columns [v0, v0 + NV kW) of the product. Block products whose
// result is turned into something else at once (scores into weights, dP into dS) run this
// way, so the product is never stored and read back for a separate elementwise pass.
template <int MR, int NV, class Epi>
void tile_epi(int64_t K, const float* a, int64_t am, int64_t ak, const float* b, int64_t ldb, Epi& epi,
              int64_t m0, int v0) {
  Reg r[MR][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 16
    for (int n = 0; n < NV; ++n) r[m][n] = V::zero();
  accumulate<MR, NV>(K, a, am, ak, b, ldb, r);
  epi.template take<MR, NV>(r, m0, v0);
}

template <int MR, int NV, class Epi>
void tile_epi_nv(int nv, int64_t K, const float* a, int64_t am, int64_t ak, const float* b, int64_t ldb,
                 Epi& epi, int64_t m0, int v0) {
  if (nv == NV) {
    tile_epi<MR, NV>(K, a, am, ak, b, ldb, epi, m0, v0);
  } else if constexpr (NV > 1) {
    tile_epi_nv<MR, NV - 1>(nv, K, a, am, ak, b, ldb, epi, m0, v0);
  }
}

template <int MR, class Epi>
void tile_epi_any(int mr, int nv, int64_t K, const float* a, int64_t am, int64_t ak, const float* b,
                  int64_t ldb, Epi& epi, int64_t m0, int v0) {
  if (mr == MR) {
    tile_epi_nv<MR, Cfg::kNv>(nv, K, a, am, ak, b, ldb, epi, m0, v0);
  } else if constexpr (MR > 1) {
    tile_epi_any<MR - 1>(mr, nv, K, a, am, ak, b, ldb, epi, m0, v0);
  }
}

template <class Epi>
void gemm_epi(int64_t M, int N, int64_t K, const float* a, int64_t am, int64_t ak, const float* b,
              int64_t ldb, Epi& epi) {
  constexpr int kNb = Cfg::kNv * kW;
  for (int v0 = 0; v0 < N; v0 += kNb) {
    const int nv = (N - v0) / kW < Cfg::kNv ? (N - v0) / kW : Cfg::kNv;
    for (int64_t m0 = 0; m0 < M; m0 += Cfg::kMr) {
      const int mr = static_cast<int>(imin(Cfg::kMr, M - m0));
      if (mr == Cfg::kMr && nv == Cfg::kNv)
        tile_epi<Cfg::kMr, Cfg::kNv>(K, a + m0 * am, am, ak, b + v0, ldb, epi, m0, v0);
      else
        tile_epi_any<Cfg::kMr>(mr, nv, K, a + m0 * am, am, ak, b + v0, ldb, epi, m0, v0);
    }
  }
}

// Partial blocks (a causal diagonal, a window edge) only need part of each product: the
// key intervals bound which rows a tile of keys can see and which keys a tile of rows can
// see. Tiles follow the gemm's row tiling (Cfg::kMr rows of C per tile).
constexpr int kMaxTiles = (kBr > kBc ? kBr : kBc) / Cfg::kMr + 1;

struct BlockRanges {
  int64_t row_lo[kMaxTiles], row_hi[kMaxTiles];  // per tile of keys: rows [lo, hi), whole vectors
  int64_t key_lo[kMaxTiles], key_hi[kMaxTiles];  // per tile of rows: keys [lo, hi) of the block
};

// Rows per key tile and keys per row tile of block [j0, j0 + Bn) from the key intervals.
void block_ranges(const Rows& rows, int64_t j0, int64_t Bn, BlockRanges* br) {
  const int R = rows.R;
  bool monotone = true;  // intervals that never move left as r grows (rows of one head)
  for (int r = 1; r < R && monotone; ++r)
    monotone = rows.lo[r] >= rows.lo[r - 1] && rows.hi[r] >= rows.hi[r - 1];
  int first = 0, end = 0;  // monotone: rows [first, end) see some key of the tile
  for (int64_t m0 = 0, t = 0; m0 < Bn; m0 += Cfg::kMr, ++t) {
    const int64_t m1 = imin(m0 + Cfg::kMr, Bn);
    int64_t lo_row = R, last = -1;
    if (monotone) {
      // As the tile moves right, both the first row that reaches it (hi > m0) and the end
      // of the rows that start before its end (lo < m1) only move down the block.
      while (first < R && rows.hi[first] - j0 <= m0) ++first;
      while (end < R && rows.lo[end] - j0 < m1) ++end;
      if (first < end) {
        lo_row = first;
        last = end - 1;
      }
    } else {
      for (int r = 0; r < R; ++r) {
        if (rows.lo[r] - j0 < m1 && rows.hi[r] - j0 > m0) {
          lo_row = r < lo_row ? r : lo_row;
          last = r;
        }
      }
    }
    br->row_lo[t] = last < 0 ? 0 : lo_row / kW * kW;
    br->row_hi[t] = last < 0 ? 0 : round_up(last + 1, kW);
  }
  for (int64_t r0 = 0, t = 0; r0 < R; r0 += Cfg::kMr, ++t) {
    int64_t lo = Bn, hi = 0;
    for (int64_t r = r0; r < imin(r0 + Cfg::kMr, R); ++r) {
      const int64_t l = imax(rows.lo[r] - j0, 0), h = imin(rows.hi[r] - j0, Bn);
      if (l < h) {
        lo = l < lo ? l : lo;
        hi = h > hi ? h : hi;
      }
    }
    br->key_lo[t] = lo < hi ? lo : 0;
    br->key_hi[t] = lo < hi ? hi : 0;
  }
}

// C[M, N] as gemm(), except that row tile t of C only computes columns
// [col_lo[t], col_hi[t]) (multiples of kW); its other columns are set to `fill`.
void gemm_cols(int64_t M, int64_t N, int64_t K, const float* a, int64_t am, int64_t ak,
               const float* b, int64_t ldb, float* c, int64_t ldc, const int64_t* col_lo,
               const int64_t* col_hi, float fill) {
  const Reg fv = V::set1(fill);
  for (int64_t m0 = 0, t = 0; m0 < M; m0 += Cfg::kMr, ++t) {
    const int mr = static_cast<int>(imin(Cfg::kMr, M - m0));
    const int64_t lo = imin(col_lo[t], N), hi = imin(col_hi[t], N);
    for (int m = 0; m < mr; ++m) {
      float* row = c + (m0 + m) * ldc;
      for (int64_t n = 0; n < lo; n += kW) V::store(row + n, fv);
      for (int64_t n = hi < lo ? lo : hi; n < N; n += kW) V::store(row + n, fv);
    }
    if (lo < hi) gemm(mr, hi - lo, K, a + m0 * am, am, ak, b + lo, ldb, c + m0 * ldc + lo, ldc, false);
  }
}

// C[M, N] += A B as gemm(), except that row tile t only sums reduction steps
// [k_lo[t], k_hi[t]): the caller knows A is exactly zero elsewhere.
void gemm_ksub(int64_t M, int64_t N, const float* a, int64_t am, int64_t ak, const float* b,
               int64_t ldb, float* c, int64_t ldc, const int64_t* k_lo, const int64_t* k_hi) {
  for (int64_t m0 = 0, t = 0; m0 < M; m0 += Cfg::kMr, ++t) {
    if (k_lo[t] >= k_hi[t]) continue;
    const int mr = static_cast<int>(imin(Cfg::kMr, M - m0));
    gemm(mr, N, k_hi[t] - k_lo[t], a + m0 * am + k_lo[t] * ak, am, ak, b + k_lo[t] * ldb, ldb,
         c + m0 * ldc, ldc, true);
  }
}

// ---------------------------------------------------------------------------------------
// Packing.

// Asks for `rows` rows of `n` floats at `stride` apart to be brought into the cache, so
// that their misses overlap instead of stalling one by one.
inline void prefetch_rows(const float* p, int64_t rows, int64_t stride, int64_t n) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t x = 0; x < n; x += 16) __builtin_prefetch(p + r * stride + x);
}

// dst[d*ld + r] = src[r*rs + d*sd] * f for r < R, d < n (Q^T, dO^T); rows R..Rp get 0.
// With unit sd, whole kW x kW blocks go through registers and a transpose.
inline void pack_transposed(float* dst, int64_t ld, const float* src, int64_t rs, int R, int Rp,
                            int64_t n, int64_t sd, float f) {
  int r0 = 0;
  if constexpr (kW > 1) {
    if (sd == 1) {
      prefetch_rows(src, R, rs, n);
      const Reg fv = V::set1(f);
      for (; r0 + kW <= R; r0 += kW) {
        for (int64_t d0 = 0; d0 < n; d0 += kW) {
          const int nd = static_cast<int>(imin(kW, n - d0));
          Reg x[kW];
          for (int r = 0; r < kW; ++r) {
            const float* p = src + (r0 + r) * rs + d0;
            x[r] = nd == kW ? V::load(p) : V::load_n(p, nd);
          }
          V::transpose(x);
          for (int d = 0; d < nd; ++d) V::store(dst + (d0 + d) * ld + r0, V::mul(x[d], fv));
        }
      }
    }
  }
  for (int64_t d = 0; d < n; ++d) {
    float* out = dst + d * ld;
    for (int r = r0; r < R; ++r) out[r] = src[r * rs + d * sd] * f;
    for (int r = R; r < Rp; ++r) out[r] = 0.0f;
  }
}

// dst[j*ld + d] = src[j*s_row + d*sd] * f for d < n, zero for n <= d < ld.
inline void pack_rows(float* dst, int64_t ld, const float* src, int64_t rows, int64_t s_row,
                      int64_t n, int64_t sd, float f) {
  for (int64_t j = 0; j < rows; ++j) {
    const float* s = src + j * s_row;
    float* out = dst + j * ld;
    if (sd == 1) {
      const Reg fv = V::set1(f);
      int64_t d = 0;
      for (; d + kW <= n; d += kW) V::store(out + d, V::mul(V::load(s + d), fv));
      for (; d < n; ++d) out[d] = s[d] * f;
    } else {
      for (int64_t d = 0; d < n; ++d) out[d] = s[d * sd] * f;
    }
    for (int64_t d = n; d < ld; ++d) out[d] = 0.0f;
  }
}

inline const float* q_row(const Ctx& c, int64_t b, const Rows& rows, int r) {
  return c.q + b * c.qs[0] + rows.rh[r] * c.qs[1] + rows.ri[r] * c.qs[2];
}

// ---------------------------------------------------------------------------------------
// Work on one block of transposed scores st [Bn, Rp] (keys x rows).

// Scores of masked-out keys become -inf; with an additive mask the mask is added and the
// result converted to the units the weighting expects (log2 units for softmax).
void apply_masks(const Ctx& c, const Rows& rows, int64_t b, int64_t j0, int64_t Bn, float* st) {
  if (!c.explicit_mask) {
    // Only the key intervals: vectorised over rows, positions relative to j0 (exact in fp32).
    const int Rp = rows.Rp;
    float rel_lo[kBr], rel_hi[kBr];
    for (int r = 0; r < Rp; ++r) {
      const bool real = r < rows.R;
      rel_lo[r] = real ? static_cast<float>(imin(imax(rows.lo[r] - j0, -1), Bn + 1)) : -1.0f;
      rel_hi[r] = real ? static_cast<float>(imin(imax(rows.hi[r] - j0, -1), Bn + 1)) : Bn + 1.0f;
    }
    for (int iv = 0; iv < Rp; iv += kW) {
      const Reg lo = V::load(rel_lo + iv), hi = V::load(rel_hi + iv);
      for (int64_t jj = 0; jj < Bn; ++jj) {
        float* p = st + jj * Rp + iv;
        V::store(p, V::keep_between(V::load(p), lo, hi, V::set1(static_cast<float>(jj))));
      }
    }
    return;
  }
  const float to_units = c.sigmoid ? 1.0f : kLog2e;
  for (int r = 0; r < rows.R; ++r) {
    const int64_t h = rows.rh[r], i = rows.ri[r], lo = rows.lo[r], hi = rows.hi[r];
    const uint8_t* bmr = c.bm ? c.bm + b * c.bms[0] + h * c.bms[1] + i * c.bms[2] : nullptr;
    const float* amr = c.am ? c.am + b * c.ams[0] + h * c.ams[1] + i * c.ams[2] : nullptr;
    for (int64_t jj = 0; jj < Bn; ++jj) {
      const int64_t j = j0 + jj;
      float& s = st[jj * rows.Rp + r];
      bool ok = j >= lo && j < hi && (bmr == nullptr || bmr[j * c.bms[3]] != 0);
      if (!ok)
        s = -kInf;
      else if (amr != nullptr)
        s = (s + amr[j * c.ams[3]]) * to_units;
    }
  }
}

// weights = sigmoid(z), in place; masked (-inf) scores give exactly 0.
void sigmoid_block(float* st, int64_t Bn, int Rp) {
  const Reg one = V::set1(1.0f), neg_log2e = V::set1(-kLog2e);
  for (int64_t x = 0; x < Bn * Rp; x += kW) {
    Reg e = V::exp2(V::mul(V::load(st + x), neg_log2e));
    V::store(st + x, V::div(one, V::add(one, e)));
  }
}

// The two elementwise steps of the backward, written once for the separate passes below and
// the products' epilogues (WeightsEpi, DsEpi), which must give the same bits:
// P = 2^(z - lse2) from a score in log2 units and the saved log2-sum-exp, and
// dS = P (dP - D_i) with D_i = rowsum(dO * O).
inline Reg weight_from_lse(Reg z, Reg lse2) { return V::exp2_nonpositive(V::sub(z, lse2)); }
inline Reg score_grad(Reg p, Reg dp, Reg di) { return V::mul(p, V::sub(dp, di)); }

// Scores -> weights in place, block [Bn, Rp]: sigmoid, or P = 2^(z - lse2) with the saved
// per-row log2-sum-exp (backward and weights-from-lse both recompute P this way).
void weights_from_scores(const Ctx& c, float* st, const float* lse2, int64_t Bn, int Rp) {
  if (c.sigmoid) {
    sigmoid_block(st, Bn, Rp);
    return;
  }
  for (int iv = 0; iv < Rp; iv += kW) {
    const Reg l2 = V::load(lse2 + iv);
    for (int64_t jj = 0; jj < Bn; ++jj) {
      float* p = st + jj * Rp + iv;
      V::store(p, weight_from_lse(V::load(p), l2));
    }
  }
}

// Multiplies weight (jj, r) by keep/(1-p) per the Philox rule of FlashDropout.
void dropout_block(const Ctx& c, const Rows& rows, int64_t b, int64_t j0, int64_t Bn,
                   uint8_t* keep, float* st, float* pd_out, float* dp) {
  for (int r = 0; r < rows.R; ++r) {
    const uint64_t index0 =
        static_cast<uint64_t>(((b * c.Hq + rows.rh[r]) * c.T + rows.ri[r]) * c.S + j0);
    flash_detail::dropout_keep_mask(c.seed, c.stream, index0, Bn, c.drop_p, keep);
    for (int64_t jj = 0; jj < Bn; ++jj) {
      const float f = keep[jj] ? c.drop_scale : 0.0f;
      const int64_t x = jj * rows.Rp + r;
      if (pd_out != nullptr) {
        pd_out[x] = st[x] * f;
        dp[x] *= f;
      } else {
        st[x] *= f;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Per-thread scratch.

struct Arena {
  char* base;
  size_t used = 0;
  template <class T>
  T* take(int64_t n) {
    used = static_cast<size_t>(round_up(static_cast<int64_t>(used), 64));
    T* p = base ? reinterpret_cast<T*>(base + used) : nullptr;
    used += static_cast<size_t>(n) * sizeof(T);
    return p;
  }
};

Rows carve_rows(Arena& a) {
  Rows r{};
  r.rh = a.take<int64_t>(kBr);
  r.ri = a.take<int64_t>(kBr);
  r.lo = a.take<int64_t>(kBr);
  r.hi = a.take<int64_t>(kBr);
  return r;
}

struct FwdScratch {
  Rows rows;
  float* qt;     // [D, Br]   Q^T of the rows, times q_factor
  float* st;     // [Bc, Br]  scores, then weights (keys x rows)
  float* vp;     // [Bc, Dvp] V rows of the key block when V cannot be read in place
  float* o;      // [Br, Dvp] unnormalised output rows
  float* m;      // [Br]      running max (log2 units)
  float* l;      // [Br]      running sum
  float* alpha;  // [Br]      rescaling of the previous blocks
  uint8_t* keep;      // [Bc]
  uint16_t* qt16;  // bf16 path: [D/2, Br, 2] Q^T pairs
  uint16_t* k16;   // bf16 path: [Bc, D rounded up to 32] K rows
  uint16_t* p16;   // bf16 path: [Bc/2, Br, 2] weight pairs (AMX: [Br, Bc] weight rows)
  uint16_t* v16;   // bf16 path: [Bc/2, Dvp, 2] V pairs
};

FwdScratch carve_fwd(Arena& a, const Ctx& c, bool bf16) {
  FwdScratch s{};
  s.rows = carve_rows(a);
  s.qt = a.take<float>(c.D * kBr);
  s.st = a.take<float>(kBc * kBr);
  s.vp = a.take<float>(kBc * c.Dvp);
  s.o = a.take<float>(kBr * c.Dvp);
  s.m = a.take<float>(kBr);
  s.l = a.take<float>(kBr);
  s.alpha = a.take<float>(kBr);
  s.keep = a.take<uint8_t>(kBc);
  if (bf16) {
    // Room for AMX's padding: reductions in chunks of 32, rows in tiles of 16.
    const int64_t d32 = round_up(c.D, 32), c32 = round_up(kBc, 32);
    s.qt16 = a.take<uint16_t>(d32 * kBr);
    s.k16 = a.take<uint16_t>(kBc * d32);
    s.p16 = a.take<uint16_t>(c32 * kBr);
    s.v16 = a.take<uint16_t>(c32 * c.Dvp);
  }
  return s;
}

// Static "snake" schedule: round k gives thread t task k*team + t (k even) or
// k*team + team-1-t (k odd). Later query blocks cost more under a causal mask, and plain
// round-robin would give each thread the same block parity; the snake balances them.
// Which thread runs a task never changes its result.
inline int64_t snake_task(int64_t round, int tid, int team) {
  return round * team + (round % 2 == 0 ? tid : team - 1 - tid);
}

// Per-thread slices are page aligned so threads never share a cache line or a page.
constexpr size_t kSliceAlign = 4096;
inline size_t slice_bytes(size_t used) { return (used + kSliceAlign - 1) / kSliceAlign * kSliceAlign; }

#if HEED_FLASH_BF16
// Provided by the includer: per-thread set-up and tear-down of the bf16 engine (AMX tile
// configuration), S^T = K Q^T and O += P V in bf16 (fp32 accumulation).
void bf16_thread_begin(const Ctx& c);
void bf16_thread_end(const Ctx& c);
void bf16_scores(const Ctx& c, FwdScratch& s, const float* kbase, int64_t j0, int64_t Bn, int Rp,
                 bool q_ready);
void bf16_pv(const Ctx& c, FwdScratch& s, const float* vbase, int64_t j0, int64_t Bn, int R,
             int Rp);
#endif

// ---------------------------------------------------------------------------------------
// Forward.

// O rows [r0, r1) *= s.alpha[r] (rows whose alpha is 1 untouched): the running output
// brought to a row's new reference max.
void rescale_o_rows(FwdScratch& s, int r0, int r1, int64_t Dvp) {
  for (int r = r0; r < r1; ++r) {
    const float a = s.alpha[r];
    if (a == 1.0f) continue;
    const Reg av = V::set1(a);
    float* orow = s.o + r * Dvp;
    for (int64_t d = 0; d < Dvp; d += kW) V::store(orow + d, V::mul(V::load(orow + d), av));
  }
}

// Online softmax over one block: st holds scores (log2 units), becomes weights exp2(s - m);
// m, l are updated and the rows of o rescaled.
void softmax_block(FwdScratch& s, int64_t Bn, int R, int Rp, int64_t Dvp) {
  float* st = s.st;
  for (int iv = 0; iv < Rp; iv += kW) {
    Reg mx = V::load(s.m + iv);
    // Four independent chains: one chain of dependent maxes would wait on its latency.
    Reg c0 = V::set1(-kInf), c1 = c0, c2 = c0, c3 = c0;
    int64_t jj = 0;
    for (; jj + 4 <= Bn; jj += 4) {
      c0 = V::max(c0, V::load(st + jj * Rp + iv));
      c1 = V::max(c1, V::load(st + (jj + 1) * Rp + iv));
      c2 = V::max(c2, V::load(st + (jj + 2) * Rp + iv));
      c3 = V::max(c3, V::load(st + (jj + 3) * Rp + iv));
    }
    for (; jj < Bn; ++jj) c0 = V::max(c0, V::load(st + jj * Rp + iv));
    Reg mn = V::max(mx, V::max(V::max(c0, c1), V::max(c2, c3)));
    // A row whose keys so far are all masked keeps m = -inf; subtracting -FLT_MAX instead
    // keeps its weights exactly 0 rather than NaN.
    Reg ms = V::max(mn, V::set1(-kMaxFloat));
    Reg al = V::exp2_nonpositive(V::sub(mx, ms));
    Reg sum0 = V::zero(), sum1 = V::zero();
    for (jj = 0; jj + 2 <= Bn; jj += 2) {
      Reg p0 = V::exp2_nonpositive(V::sub(V::load(st + jj * Rp + iv), ms));
      Reg p1 = V::exp2_nonpositive(V::sub(V::load(st + (jj + 1) * Rp + iv), ms));
      V::store(st + jj * Rp + iv, p0);
      V::store(st + (jj + 1) * Rp + iv, p1);
      sum0 = V::add(sum0, p0);
      sum1 = V::add(sum1, p1);
    }
    if (jj < Bn) {
      Reg p = V::exp2_nonpositive(V::sub(V::load(st + jj * Rp + iv), ms));
      V::store(st + jj * Rp + iv, p);
      sum0 = V::add(sum0, p);
    }
    V::store(s.l + iv, V::fma(V::load(s.l + iv), al, V::add(sum0, sum1)));
    V::store(s.m + iv, mn);
    V::store(s.alpha + iv, al);
  }
  rescale_o_rows(s, 0, R, Dvp);
}

// Scores and online softmax in one pass, for a block every row sees whole (no mask inside
// it, softmax in log2 units): S^T = K Q^T is computed tile by tile as gemm() does, and each
// tile's scores become weights exp2(s - m) while still in registers, so they are never
// stored and read back (softmax_block's two passes over the block). A row's reference m is
// raised only when one of its scores exceeds it by more than kMaxSlack (log2 units), not on
// every new maximum: weights then stay below 2^kMaxSlack, O and l are kept relative to the
// same m as always, and the rescaling of O is left out for almost every block after a
// row's first. The result is the same softmax up to rounding.
constexpr float kMaxSlack = 8.0f;

// Raises the reference max of rows [v, v + kW) to at least tmax, rescaling their running
// sums, their rows of O and the weights already written for keys [0, keys_done) of this
// block; returns the new reference.
[[gnu::noinline]] Reg raise_max(FwdScratch& s, int v, int R, int Rp, int64_t Dvp, Reg tmax, int64_t keys_done) {
  const Reg mold = V::load(s.m + v);
  const Reg mnew = V::max(V::max(mold, tmax), V::set1(-kMaxFloat));  // as softmax_block's ms
  const Reg al = V::exp2_nonpositive(V::sub(mold, mnew));            // 0 where mold = -inf
  V::store(s.m + v, mnew);
  V::store(s.l + v, V::mul(V::load(s.l + v), al));
  for (int64_t jj = 0; jj < keys_done; ++jj) V::store(s.st + jj * Rp + v, V::mul(V::load(s.st + jj * Rp + v), al));
  V::store(s.alpha + v, al);
  rescale_o_rows(s, v, v + kW < R ? v + kW : R, Dvp);
  return mnew;
}

// The epilogue of scores_softmax: keys [j, j + MR) of the block against rows
// [v0, v0 + NV kW), turned into weights in place of storing the scores.
struct SoftmaxEpi {
  FwdScratch& s;
  int R, Rp;
  int64_t Dvp;
  template <int MR, int NV>
  [[gnu::always_inline]] void take(Reg (&r)[MR][NV], int64_t j, int v0) {
    const Reg slack = V::set1(kMaxSlack);
#pragma GCC unroll 16
    for (int n = 0; n < NV; ++n) {
      const int v = v0 + n * kW;
      Reg mref = V::load(s.m + v);
      Reg tmax = r[0][n];
#pragma GCC unroll 16
      for (int m = 1; m < MR; ++m) tmax = V::max(tmax, r[m][n]);
      if (V::any_greater(tmax, V::add(mref, slack))) mref = raise_max(s, v, R, Rp, Dvp, tmax, j);
      Reg sum = V::zero();
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) {
        const Reg p = V::exp2_nonpositive(V::sub(r[m][n], mref));
        V::store(s.st + (j + m) * Rp + v, p);
        sum = V::add(sum, p);
      }
      V::store(s.l + v, V::add(V::load(s.l + v), sum));
    }
  }
};

// Weights of a whole block of Bn keys (K rows from kblock, strides ks2 between keys and
// ks3 within one) into s.st, with m, l and O updated: gemm() then softmax_block() in one pass.
void scores_softmax(FwdScratch& s, const float* kblock, int64_t ks2, int64_t ks3, int64_t Bn, int64_t D, int R,
                    int Rp, int64_t Dvp) {
  SoftmaxEpi epi{s, R, Rp, Dvp};
  gemm_epi(Bn, Rp, D, kblock, ks2, ks3, s.qt, Rp, epi);
}

// Attention of the block's rows (batch b, kv head kvh) over keys [kbeg, kend). part ==
// nullptr: normalise and write out (and lse); else write (m, l, o[Dv]) of row r to
// part + r * part_ld.
void forward_rows(const Ctx& c, FwdScratch& s, int64_t b, int64_t kvh, int64_t kbeg,
                  int64_t kend, float* part, int64_t part_ld, bool bf16) {
  Rows& rows = s.rows;
  const int R = rows.R, Rp = rows.Rp;
  const int64_t D = c.D, Dv = c.Dv, Dvp = c.Dvp;
  // The rows of a block are equally spaced in q (consecutive rows of one head, or the
  // same row of consecutive heads), so a base pointer and a row stride describe them.
  const float* q0 = q_row(c, b, rows, 0);
  const int64_t q_rs = R > 1 ? q_row(c, b, rows, 1) - q0 : 0;
  pack_transposed(s.qt, Rp, q0, q_rs, R, Rp, D, c.qs[3], c.q_factor);
  for (int r = 0; r < Rp; ++r) {
    s.m[r] = -kInf;
    s.l[r] = 0.0f;
  }
  std::memset(s.o, 0, sizeof(float) * R * Dvp);

  int64_t jlo, jhi;
  rows_key_range(c, b, rows, kbeg, kend, &jlo, &jhi);
  const float* kbase = c.k + b * c.ks[0] + kvh * c.ks[1];
  const float* vbase = c.v + b * c.vs[0] + kvh * c.vs[1];
  // V rows are read in place when they are whole, unit-stride, 64-byte aligned vectors
  // (a tensor's storage is 64-byte aligned); otherwise copied per block.
  const bool v_in_place = c.vs[3] == 1 && Dv % kW == 0 && (c.vs[2] * 4) % 64 == 0 &&
                          reinterpret_cast<uintptr_t>(vbase) % 64 == 0;
  const bool k_blas = c.blas && c.ks[3] == 1;
#if HEED_FLASH_BF16
  bool q_ready = false;
#endif
  BlockRanges ranges;
  for (int64_t j0 = jlo; j0 < jhi; j0 += kBc) {
    const int64_t Bn = imin(kBc, jhi - j0);
    const Cover cover = classify(c, rows, j0, j0 + Bn);
    if (cover == Cover::kNone) continue;
    // Scores and softmax in one pass (scores_softmax) for the f32 kernel's whole blocks.
    const bool one_pass = !bf16 && !k_blas && cover == Cover::kFull && !c.sigmoid;
    // No software prefetch of the next block's K and V rows: the burst of prefetches
    // stalled on fill buffers; leaving it to the hardware prefetchers measured +3-15 % at
    // L >= 2048 and within noise at L = 512 (D = 64 and 128, one thread).
    // S^T [Bn, Rp] = K Q^T
#if HEED_FLASH_BF16
    if (bf16) {
      bf16_scores(c, s, kbase, j0, Bn, Rp, q_ready);
      q_ready = true;
    } else
#endif
    if (k_blas) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(Bn), Rp,
                  static_cast<int>(D), 1.0f, kbase + j0 * c.ks[2], static_cast<int>(c.ks[2]),
                  s.qt, Rp, 0.0f, s.st, Rp);
    } else if (one_pass) {
      // A full block has no explicit mask, so its scores are in log2 units (c.log2_units).
      scores_softmax(s, kbase + j0 * c.ks[2], c.ks[2], c.ks[3], Bn, D, R, Rp, Dvp);
    } else if (cover == Cover::kPartial) {
      block_ranges(rows, j0, Bn, &ranges);
      gemm_cols(Bn, Rp, D, kbase + j0 * c.ks[2], c.ks[2], c.ks[3], s.qt, Rp, s.st, Rp,
                ranges.row_lo, ranges.row_hi, -kInf);
    } else {
      gemm(Bn, Rp, D, kbase + j0 * c.ks[2], c.ks[2], c.ks[3], s.qt, Rp, s.st, Rp, false);
    }
    if (cover == Cover::kPartial) apply_masks(c, rows, b, j0, Bn, s.st);
    if (c.sigmoid)
      sigmoid_block(s.st, Bn, Rp);
    else if (!one_pass)
      softmax_block(s, Bn, R, Rp, Dvp);
    if (c.dropout) dropout_block(c, rows, b, j0, Bn, s.keep, s.st, nullptr, nullptr);
    // O [R, Dv] += P V, with P(r, jj) = st[jj*Rp + r]
#if HEED_FLASH_BF16
    if (bf16) {
      bf16_pv(c, s, vbase, j0, Bn, R, Rp);
      continue;
    }
#endif
    const float* vrows = vbase + j0 * c.vs[2];
    int64_t ldv = c.vs[2];
    if (!v_in_place) {
      pack_rows(s.vp, Dvp, vrows, Bn, c.vs[2], Dv, c.vs[3], 1.0f);
      vrows = s.vp;
      ldv = Dvp;
    }
    if (c.blas && ldv == Dvp) {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, static_cast<int>(Dvp),
                  static_cast<int>(Bn), 1.0f, s.st, Rp, vrows, static_cast<int>(ldv), 1.0f, s.o,
                  static_cast<int>(Dvp));
    } else if (cover == Cover::kPartial && !k_blas) {
      // Weights outside each row tile's keys are exactly zero.
      gemm_ksub(R, Dvp, s.st, 1, Rp, vrows, ldv, s.o, Dvp, ranges.key_lo, ranges.key_hi);
    } else {
      gemm(R, Dvp, Bn, s.st, 1, Rp, vrows, ldv, s.o, Dvp, true);
    }
  }

  for (int r = 0; r < R; ++r) {
    const int64_t h = rows.rh[r], i = rows.ri[r];
    const float* orow = s.o + r * Dvp;
    if (part != nullptr) {
      float* pr = part + r * part_ld;
      pr[0] = s.m[r];
      pr[1] = s.l[r];
      std::memcpy(pr + 2, orow, sizeof(float) * Dv);
      continue;
    }
    float* out = c.o + b * c.os[0] + h * c.os[1] + i * c.os[2];
    if (c.sigmoid) {
      for (int64_t d = 0; d < Dv; ++d) out[d * c.os[3]] = orow[d];
      continue;
    }
    const float l = s.l[r];
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int64_t d = 0; d < Dv; ++d) out[d * c.os[3]] = orow[d] * inv;
    if (c.lse != nullptr) c.lse[(b * c.Hq + h) * c.T + i] = l > 0.0f ? s.m[r] * kLn2 + std::log(l) : -kInf;
  }
}

// Threads for a kernel call: one below kSerialMacs multiply-adds (waking a sleeping team
// costs more than such a call: decoding one token at batch 1 is ~12k), else at most one per
// task. Every task is computed the same way by whichever thread runs it, so the team size
// never changes the result.
constexpr int64_t kSerialMacs = int64_t{1} << 19;

int team_size(const Ctx& c, int64_t tasks, int64_t passes) {
  const int64_t macs = c.B * c.Hq * c.T * c.S * (c.D + c.Dv) * passes;
  if (macs < kSerialMacs || tasks <= 1) return 1;
  return static_cast<int>(imin(omp_get_max_threads(), tasks));
}

// Decoding (T = 1): the keys of each (b, kv head) are split into chunks whose partial
// (max, sum, output) are merged in chunk order, so the result does not depend on threads.
// The query heads of a kv group form the rows of one block.
void forward_decode(const Ctx& c, FlashWorkspace& ws, bool bf16) {
  const int64_t chunk = imax(4 * kBc, round_up(ceil_div(c.S, 16), kBc));
  const int64_t n_chunks = imax(1, ceil_div(c.S, chunk));
  const int64_t row_blocks = ceil_div(c.group, kBr);
  const int64_t part_stride = c.Dv + 2;

  Arena probe{nullptr};
  carve_fwd(probe, c, bf16);
  const size_t per = slice_bytes(probe.used);
  const size_t part_bytes = slice_bytes(sizeof(float) * c.B * c.Hq * n_chunks * part_stride);
  const int64_t n_tasks = c.B * c.Hkv * row_blocks * n_chunks;
  const int64_t n_heads = c.B * c.Hq;
  const int nt = team_size(c, n_tasks, 1);
  char* base = static_cast<char*>(ws.reserve(part_bytes + per * nt));
  float* parts = reinterpret_cast<float*>(base);  // [B, Hq, n_chunks, Dv + 2]

#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    Arena a{base + part_bytes + per * tid};
    FwdScratch s = carve_fwd(a, c, bf16);
#if HEED_FLASH_BF16
    if (bf16) bf16_thread_begin(c);
#endif
    for (int64_t task = tid; task < n_tasks; task += team) {
      int64_t t = task;
      const int64_t ch = t % n_chunks;
      t /= n_chunks;
      const int64_t rb = t % row_blocks;
      t /= row_blocks;
      const int64_t kvh = t % c.Hkv, b = t / c.Hkv;
      const int64_t h0 = kvh * c.group + rb * kBr;
      const int R = static_cast<int>(imin(kBr, (kvh + 1) * c.group - h0));
      s.rows.R = R;
      s.rows.Rp = static_cast<int>(round_up(R, kW));
      for (int r = 0; r < R; ++r) {
        s.rows.rh[r] = h0 + r;
        s.rows.ri[r] = 0;
      }
      // Row r's partial goes to parts[b, h0 + r, ch]: rows are n_chunks partials apart.
      float* part = parts + ((b * c.Hq + h0) * n_chunks + ch) * part_stride;
      forward_rows(c, s, b, kvh, ch * chunk, imin(c.S, (ch + 1) * chunk), part,
                   n_chunks * part_stride, bf16);
    }
#if HEED_FLASH_BF16
    if (bf16) bf16_thread_end(c);
#endif
#pragma omp barrier
    for (int64_t bh = tid; bh < n_heads; bh += team) {
      const int64_t b = bh / c.Hq, h = bh % c.Hq;
      const float* pp = parts + bh * n_chunks * part_stride;
      float* out = c.o + b * c.os[0] + h * c.os[1];
      if (c.sigmoid) {
        for (int64_t d = 0; d < c.Dv; ++d) {
          float acc = 0.0f;
          for (int64_t ch = 0; ch < n_chunks; ++ch) acc += pp[ch * part_stride + 2 + d];
          out[d * c.os[3]] = acc;
        }
        continue;
      }
      float mx = -kInf;
      for (int64_t ch = 0; ch < n_chunks; ++ch) mx = pp[ch * part_stride] > mx ? pp[ch * part_stride] : mx;
      float l = 0.0f;
      for (int64_t ch = 0; ch < n_chunks; ++ch)
        if (pp[ch * part_stride + 1] > 0.0f) l += pp[ch * part_stride + 1] * std::exp2(pp[ch * part_stride] - mx);
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      for (int64_t d = 0; d < c.Dv; ++d) {
        float acc = 0.0f;
        for (int64_t ch = 0; ch < n_chunks; ++ch)
          if (pp[ch * part_stride + 1] > 0.0f)
            acc += pp[ch * part_stride + 2 + d] * std::exp2(pp[ch * part_stride] - mx);
        out[d * c.os[3]] = acc * inv;
      }
      if (c.lse != nullptr) c.lse[bh] = l > 0.0f ? mx * kLn2 + std::log(l) : -kInf;
    }
  }
}

void forward_impl(const FlashParams& p, FlashWorkspace& ws) {
  const Ctx c = make_ctx(p);
  const bool bf16 = p.precision == FlashPrecision::kBF16;
  if (c.T == 1) {
    forward_decode(c, ws, bf16);
    return;
  }
  Arena probe{nullptr};
  carve_fwd(probe, c, bf16);
  const size_t per = slice_bytes(probe.used);
  const int64_t n_qb = ceil_div(c.T, kBr);
  const int64_t n_tasks = c.B * c.Hq * n_qb;
  const int nt = team_size(c, n_tasks, 1);
  char* base = static_cast<char*>(ws.reserve(per * nt));
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    Arena a{base + per * tid};
    FwdScratch s = carve_fwd(a, c, bf16);
#if HEED_FLASH_BF16
    if (bf16) bf16_thread_begin(c);
#endif
    for (int64_t round = 0; round * team < n_tasks; ++round) {
      const int64_t task = snake_task(round, tid, team);
      if (task >= n_tasks) continue;
      const int64_t qb = task % n_qb, bh = task / n_qb;
      const int64_t b = bh / c.Hq, h = bh % c.Hq;
      const int64_t i0 = qb * kBr;
      const int R = static_cast<int>(imin(kBr, c.T - i0));
      s.rows.R = R;
      s.rows.Rp = static_cast<int>(round_up(R, kW));
      for (int r = 0; r < R; ++r) {
        s.rows.rh[r] = h;
        s.rows.ri[r] = i0 + r;
      }
      forward_rows(c, s, b, h / c.group, 0, c.S, nullptr, 0, bf16);
    }
#if HEED_FLASH_BF16
    if (bf16) bf16_thread_end(c);
#endif
  }
}

// ---------------------------------------------------------------------------------------
// Backward: P is recomputed block by block from the saved lse.
//   dV = P_d^T dO,  dP = dO V^T (times the dropout factor),  dS = P * (dP - rowsum(dO * O)),
//   dQ = scale * dS K,  dK = scale * dS^T Q,  d(additive mask) = dS.
// For sigmoid weights W: dS = dP * W * (1 - W).
// One task per (batch, kv head) owns that head's dK and dV and the dQ of its query heads,
// and runs its blocks in a fixed order: no atomics, results independent of thread count.
// With fewer such tasks than threads, two passes split them further (dK/dV by key chunks,
// dQ by query blocks) with every sum in the same order (backward_impl).

struct GradCtx {
  const float* dout;
  int64_t dos[4];
  float* dq;
  int64_t dqs[4];
  float* dk;
  int64_t dks[4];
  float* dv;
  int64_t dvs[4];
  float* dmask;
};

GradCtx make_grad_ctx(const FlashGrads& g) {
  GradCtx x{};
  x.dout = g.grad_out;
  x.dq = g.grad_q;
  x.dk = g.grad_k;
  x.dv = g.grad_v;
  x.dmask = g.grad_additive_mask;
  for (int i = 0; i < 4; ++i) {
    x.dos[i] = g.grad_out_strides[i];
    x.dqs[i] = g.grad_q_strides[i];
    x.dks[i] = g.grad_k_strides[i];
    x.dvs[i] = g.grad_v_strides[i];
  }
  return x;
}

struct BwdScratch {
  Rows rows;
  float* qt;    // [D, Br]   Q^T * q_factor
  float* dot;   // [Dv, Br]  dO^T
  float* qs;    // [Br, Dp]  Q * q_factor
  float* dos;   // [Br, Dvp] dO
  float* st;    // [Bc, Br]  scores, then P^T
  float* dpt;   // [Bc, Br]  dP^T, then dS^T
  float* pdt;   // [Bc, Br]  P^T after dropout
  float* kp;    // [Bc, Dp]  K rows when K cannot be read in place
  float* dqa;   // [Br, Dp]  dQ of the row block
  float* lse2;  // [Br]      lse in log2 units; +inf for a fully masked row
  float* di;    // [Br]      rowsum(dO * O)
  uint8_t* keep;  // [Bc]
  float* dkb;   // [S, Dp]   dK of the task when grad_k's rows are not unit-stride
  float* dvb;   // [S, Dvp]  dV likewise
};

BwdScratch carve_bwd(Arena& a, const Ctx& c, const GradCtx& g) {
  BwdScratch s{};
  s.rows = carve_rows(a);
  s.qt = a.take<float>(c.D * kBr);
  s.dot = a.take<float>(c.Dv * kBr);
  s.qs = a.take<float>(kBr * c.Dp);
  s.dos = a.take<float>(kBr * c.Dvp);
  s.st = a.take<float>(kBc * kBr);
  s.dpt = a.take<float>(kBc * kBr);
  s.pdt = a.take<float>(kBc * kBr);
  s.kp = a.take<float>(kBc * c.Dp);
  s.dqa = a.take<float>(kBr * c.Dp);
  s.lse2 = a.take<float>(kBr);
  s.di = a.take<float>(kBr);
  s.keep = a.take<uint8_t>(kBc);
  if (g.dk != nullptr && g.dks[3] != 1) s.dkb = a.take<float>(c.S * c.Dp);
  if (g.dv != nullptr && g.dvs[3] != 1) s.dvb = a.take<float>(c.S * c.Dvp);
  return s;
}

// Packs Q and dO of the block's rows (both layouts), lse and rowsum(dO * O).
void backward_pack(const Ctx& c, const GradCtx& g, BwdScratch& s, int64_t b, const float* di_all,
                   bool row_major) {
  const Rows& rows = s.rows;
  const int R = rows.R, Rp = rows.Rp;
  // Rows are consecutive query rows of one head: q and dO rows are qs[2] / dos[2] apart.
  const float* q0 = q_row(c, b, rows, 0);
  pack_transposed(s.qt, Rp, q0, c.qs[2], R, Rp, c.D, c.qs[3], c.q_factor);
  if (row_major) pack_rows(s.qs, c.Dp, q0, R, c.qs[2], c.D, c.qs[3], c.q_factor);
  const float* do0 = g.dout + b * g.dos[0] + rows.rh[0] * g.dos[1] + rows.ri[0] * g.dos[2];
  pack_transposed(s.dot, Rp, do0, g.dos[2], R, Rp, c.Dv, g.dos[3], 1.0f);
  if (row_major) pack_rows(s.dos, c.Dvp, do0, R, g.dos[2], c.Dv, g.dos[3], 1.0f);
  for (int r = 0; r < Rp; ++r) {
    s.lse2[r] = 0.0f;
    s.di[r] = 0.0f;
  }
  if (c.sigmoid) return;
  for (int r = 0; r < R; ++r) {
    const int64_t row = (b * c.Hq + rows.rh[r]) * c.T + rows.ri[r];
    const float lse = c.lse[row];
    s.lse2[r] = lse == -kInf ? kInf : lse * kLog2e;
    s.di[r] = di_all[row];
  }
}

// Epilogues of a whole block's products (no mask inside it, softmax, no dropout): the steps
// of weights_from_scores and backward_block's dS loop (weight_from_lse, score_grad):
// P^T = 2^(S^T - lse2) stored as S^T's tiles come out of K Q^T, and dS^T = P^T (dP^T - di)
// as dP^T's come out of V dO^T.
struct WeightsEpi {
  float* st;
  const float* lse2;
  int Rp;
  template <int MR, int NV>
  [[gnu::always_inline]] void take(Reg (&r)[MR][NV], int64_t j, int v0) {
#pragma GCC unroll 16
    for (int n = 0; n < NV; ++n) {
      const Reg l2 = V::load(lse2 + v0 + n * kW);
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) V::store(st + (j + m) * Rp + v0 + n * kW, weight_from_lse(r[m][n], l2));
    }
  }
};

struct DsEpi {
  float* dst;
  const float* pt;
  const float* di;
  int Rp;
  template <int MR, int NV>
  [[gnu::always_inline]] void take(Reg (&r)[MR][NV], int64_t j, int v0) {
#pragma GCC unroll 16
    for (int n = 0; n < NV; ++n) {
      const Reg d = V::load(di + v0 + n * kW);
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) {
        const int64_t x = (j + m) * Rp + v0 + n * kW;
        V::store(dst + x, score_grad(V::load(pt + x), r[m][n], d));
      }
    }
  }
};

// Recomputes block [j0, j0 + Bn) for the packed rows: P^T into st, dS^T into dpt and,
// with dropout, the dropped-out P^T into pdt. Returns the P^T that multiplies dO for dV.
// Partial blocks only compute the rows each key tile can see (ranges, from block_ranges):
// the rest of S^T is -inf and of dP^T zero, so P and dS are exactly zero there.
const float* backward_block(const Ctx& c, BwdScratch& s, int64_t b, const float* kbase,
                            const float* vbase, int64_t j0, int64_t Bn, Cover cover,
                            const BlockRanges& ranges) {
  const Rows& rows = s.rows;
  const int Rp = rows.Rp;
  const bool partial = cover == Cover::kPartial;
  // A whole softmax block without dropout turns S^T into P^T and dP^T into dS^T in the
  // products' epilogues (WeightsEpi, DsEpi); the rest take separate passes.
  const bool fused = cover == Cover::kFull && !c.sigmoid && !c.dropout;
  if (partial) {
    gemm_cols(Bn, Rp, c.D, kbase + j0 * c.ks[2], c.ks[2], c.ks[3], s.qt, Rp, s.st, Rp,
              ranges.row_lo, ranges.row_hi, -kInf);
  } else if (fused) {
    WeightsEpi epi{s.st, s.lse2, Rp};
    gemm_epi(Bn, Rp, c.D, kbase + j0 * c.ks[2], c.ks[2], c.ks[3], s.qt, Rp, epi);
  } else {
    gemm(Bn, Rp, c.D, kbase + j0 * c.ks[2], c.ks[2], c.ks[3], s.qt, Rp, s.st, Rp, false);
  }
  if (partial) apply_masks(c, rows, b, j0, Bn, s.st);
  if (!fused) weights_from_scores(c, s.st, s.lse2, Bn, Rp);
  if (partial) {
    gemm_cols(Bn, Rp, c.Dv, vbase + j0 * c.vs[2], c.vs[2], c.vs[3], s.dot, Rp, s.dpt, Rp,
              ranges.row_lo, ranges.row_hi, 0.0f);
  } else if (fused) {
    DsEpi epi{s.dpt, s.st, s.di, Rp};
    gemm_epi(Bn, Rp, c.Dv, vbase + j0 * c.vs[2], c.vs[2], c.vs[3], s.dot, Rp, epi);
    return s.st;
  } else {
    gemm(Bn, Rp, c.Dv, vbase + j0 * c.vs[2], c.vs[2], c.vs[3], s.dot, Rp, s.dpt, Rp, false);
  }
  const float* pd = s.st;
  if (c.dropout) {
    dropout_block(c, rows, b, j0, Bn, s.keep, s.st, s.pdt, s.dpt);
    pd = s.pdt;
  }
  if (c.sigmoid) {
    const Reg one = V::set1(1.0f);
    for (int64_t x = 0; x < Bn * Rp; x += kW) {
      const Reg w = V::load(s.st + x);
      V::store(s.dpt + x, V::mul(V::load(s.dpt + x), V::mul(w, V::sub(one, w))));
    }
  } else {
    for (int iv = 0; iv < Rp; iv += kW) {
      const Reg di = V::load(s.di + iv);
      for (int64_t jj = 0; jj < Bn; ++jj) {
        const int64_t x = jj * Rp + iv;
        V::store(s.dpt + x, score_grad(V::load(s.st + x), V::load(s.dpt + x), di));
      }
    }
  }
  return pd;
}

inline void set_rows(Rows& rows, int64_t h, int64_t i0, int64_t T) {
  rows.R = static_cast<int>(imin(kBr, T - i0));
  rows.Rp = static_cast<int>(round_up(rows.R, kW));
  for (int r = 0; r < rows.R; ++r) {
    rows.rh[r] = h;
    rows.ri[r] = i0 + r;
  }
}

// What one backward task covers of a (batch, kv head): the query heads [hg0, hg1) of its group,
// query rows [i_begin, i_end) (multiples of kBr apart from T), and either everything (the
// one-pass backward), or only dK/dV of the keys [key_begin, key_end), or only dQ.
struct BwdPart {
  int64_t hg0 = 0, hg1 = 0;
  int64_t i_begin = 0, i_end = 0;
  int64_t key_begin = 0, key_end = 0;
  bool kv = true;  // dK, dV of the keys [key_begin, key_end)
  bool q = true;   // dQ of the rows
};

void backward_task(const Ctx& c, const GradCtx& g, BwdScratch& s, int64_t b, int64_t kvh,
                   const float* di_all, const BwdPart& part) {
  const int64_t D = c.D, Dv = c.Dv, Dp = c.Dp, Dvp = c.Dvp;
  const float* kbase = c.k + b * c.ks[0] + kvh * c.ks[1];
  const float* vbase = c.v + b * c.vs[0] + kvh * c.vs[1];
  const bool dk_direct = g.dks[3] == 1, dv_direct = g.dvs[3] == 1;
  float* dk = dk_direct ? g.dk + b * g.dks[0] + kvh * g.dks[1] : s.dkb;
  float* dv = dv_direct ? g.dv + b * g.dvs[0] + kvh * g.dvs[1] : s.dvb;
  const int64_t ldk = dk_direct ? g.dks[2] : Dp, ldv = dv_direct ? g.dvs[2] : Dvp;
  if (part.kv)
    for (int64_t j = part.key_begin; j < part.key_end; ++j) {
      std::memset(dk + j * ldk, 0, sizeof(float) * D);
      std::memset(dv + j * ldv, 0, sizeof(float) * Dv);
    }
  const bool k_in_place = c.ks[3] == 1 && D % kW == 0 && (c.ks[2] * 4) % 64 == 0 &&
                          reinterpret_cast<uintptr_t>(kbase) % 64 == 0;
  Rows& rows = s.rows;
  BlockRanges ranges;
  for (int64_t hg = part.hg0; hg < part.hg1; ++hg) {
    const int64_t h = kvh * c.group + hg;
    for (int64_t i0 = part.i_begin; i0 < part.i_end; i0 += kBr) {
      set_rows(rows, h, i0, c.T);
      const int R = rows.R, Rp = rows.Rp;
      int64_t jlo, jhi;
      rows_key_range(c, b, rows, 0, c.S, &jlo, &jhi);
      if (part.q) std::memset(s.dqa, 0, sizeof(float) * R * Dp);
      // A dK/dV-only task skips the row blocks that see none of its keys.
      const bool any = part.q || (jlo < part.key_end && jhi > part.key_begin);
      if (jlo < jhi && any) backward_pack(c, g, s, b, di_all, true);
      for (int64_t j0 = jlo; j0 < jhi && any; j0 += kBc) {
        // A dK/dV-only task takes the key blocks that start among its keys (its key range is
        // a whole number of blocks, and the blocks start at multiples of kBc there).
        if (!part.q && (j0 < part.key_begin || j0 >= part.key_end)) continue;
        const int64_t Bn = imin(kBc, jhi - j0);
        const Cover cover = classify(c, rows, j0, j0 + Bn);
        if (cover == Cover::kNone) continue;
        const bool partial = cover == Cover::kPartial;
        if (partial) {
          block_ranges(rows, j0, Bn, &ranges);
          for (int64_t t = 0; t * Cfg::kMr < Bn; ++t) ranges.row_hi[t] = imin(ranges.row_hi[t], R);
        }
        const float* pd = backward_block(c, s, b, kbase, vbase, j0, Bn, cover, ranges);
        // dV [Bn, Dv] += P_d^T dO ;  dK [Bn, D] += dS^T (Q * q_factor)
        if (part.kv) {
          if (partial) {
            gemm_ksub(Bn, Dv, pd, Rp, 1, s.dos, Dvp, dv + j0 * ldv, ldv, ranges.row_lo, ranges.row_hi);
            gemm_ksub(Bn, D, s.dpt, Rp, 1, s.qs, Dp, dk + j0 * ldk, ldk, ranges.row_lo, ranges.row_hi);
          } else {
            gemm(Bn, Dv, R, pd, Rp, 1, s.dos, Dvp, dv + j0 * ldv, ldv, true);
            gemm(Bn, D, R, s.dpt, Rp, 1, s.qs, Dp, dk + j0 * ldk, ldk, true);
          }
        }
        if (!part.q) continue;
        // dQ [R, D] += dS K
        const float* kr = kbase + j0 * c.ks[2];
        int64_t ldkr = c.ks[2];
        if (!k_in_place) {
          pack_rows(s.kp, Dp, kr, Bn, c.ks[2], D, c.ks[3], 1.0f);
          kr = s.kp;
          ldkr = Dp;
        }
        if (partial)
          gemm_ksub(R, Dp, s.dpt, 1, Rp, kr, ldkr, s.dqa, Dp, ranges.key_lo, ranges.key_hi);
        else
          gemm(R, Dp, Bn, s.dpt, 1, Rp, kr, ldkr, s.dqa, Dp, true);
      }
      if (part.q)
        for (int r = 0; r < R; ++r) {
          float* out = g.dq + b * g.dqs[0] + h * g.dqs[1] + rows.ri[r] * g.dqs[2];
          for (int64_t d = 0; d < D; ++d) out[d * g.dqs[3]] = s.dqa[r * Dp + d] * c.scale;
        }
    }
  }
  if (!part.kv) return;
  // dK was accumulated against Q * q_factor: scale * dS^T Q = (scale / q_factor) * dS^T (Q q_factor).
  const float dk_factor = c.log2_units ? kLn2 : 1.0f;
  for (int64_t j = part.key_begin; j < part.key_end; ++j) {
    float* src = dk + j * ldk;
    float* out = g.dk + b * g.dks[0] + kvh * g.dks[1] + j * g.dks[2];
    for (int64_t d = 0; d < D; ++d) out[d * g.dks[3]] = src[d] * dk_factor;
    if (!dv_direct) {
      float* vout = g.dv + b * g.dvs[0] + kvh * g.dvs[1] + j * g.dvs[2];
      for (int64_t d = 0; d < Dv; ++d) vout[d * g.dvs[3]] = dv[j * ldv + d];
    }
  }
}

// d(additive mask): one task per distinct (b, h, query block) of the mask's own layout;
// broadcast (stride 0) dimensions are summed inside the task in a fixed order.
void mask_grad_task(const Ctx& c, const GradCtx& g, BwdScratch& s, int64_t mb, int64_t mh,
                    int64_t t0, int64_t t1, const float* di_all) {
  const int64_t* ms = c.ams;
  float* gbase = g.dmask + mb * ms[0] + mh * ms[1];
  for (int64_t i = t0; i < t1; ++i)
    for (int64_t j = 0; j < c.S; ++j) gbase[i * ms[2] + j * ms[3]] = 0.0f;
  const int64_t b_end = ms[0] == 0 ? c.B : mb + 1, h_end = ms[1] == 0 ? c.Hq : mh + 1;
  Rows& rows = s.rows;
  BlockRanges ranges;
  for (int64_t b = ms[0] == 0 ? 0 : mb; b < b_end; ++b) {
    for (int64_t h = ms[1] == 0 ? 0 : mh; h < h_end; ++h) {
      const int64_t kvh = h / c.group;
      const float* kbase = c.k + b * c.ks[0] + kvh * c.ks[1];
      const float* vbase = c.v + b * c.vs[0] + kvh * c.vs[1];
      for (int64_t i0 = t0; i0 < t1; i0 += kBr) {
        set_rows(rows, h, i0, t1);
        int64_t jlo, jhi;
        rows_key_range(c, b, rows, 0, c.S, &jlo, &jhi);
        if (jlo >= jhi) continue;
        backward_pack(c, g, s, b, di_all, false);
        for (int64_t j0 = jlo; j0 < jhi; j0 += kBc) {
          const int64_t Bn = imin(kBc, jhi - j0);
          const Cover cover = classify(c, rows, j0, j0 + Bn);
          if (cover == Cover::kNone) continue;
          if (cover == Cover::kPartial) block_ranges(rows, j0, Bn, &ranges);
          backward_block(c, s, b, kbase, vbase, j0, Bn, cover, ranges);
          for (int r = 0; r < rows.R; ++r) {
            float* grow = gbase + rows.ri[r] * ms[2];
            for (int64_t jj = 0; jj < Bn; ++jj) grow[(j0 + jj) * ms[3]] += s.dpt[jj * rows.Rp + r];
          }
        }
      }
    }
  }
}

// sum over d < n of a[d*sa] * b[d*sb]; unit-stride rows in vector partial sums (summed in
// order, the scalar loop would wait on each add's latency: 4 % of a causal L = 512
// forward+backward was spent there).
inline float row_dot(const float* a, int64_t sa, const float* b, int64_t sb, int64_t n) {
  float acc = 0.0f;
  int64_t d = 0;
  if (sa == 1 && sb == 1 && n >= kW) {
    Reg v = V::zero();
    for (; d + kW <= n; d += kW) v = V::fma(V::load(a + d), V::load(b + d), v);
    acc = V::hsum(v);
  }
  for (; d < n; ++d) acc += a[d * sa] * b[d * sb];
  return acc;
}

void backward_impl(const FlashParams& p, const FlashGrads& grads, FlashWorkspace& ws) {
  const Ctx c = make_ctx(p);
  const GradCtx g = make_grad_ctx(grads);
  Arena probe{nullptr};
  carve_bwd(probe, c, g);
  const size_t per = slice_bytes(probe.used);
  const size_t di_bytes = slice_bytes(sizeof(float) * c.B * c.Hq * c.T);
  const int64_t n_tasks = c.B * c.Hkv;
  // Fewer (batch, kv head) tasks than threads: two passes instead, dK/dV over key chunks, then
  // dQ over query blocks (7 block products instead of 5, all threads busy). Each key's dK/dV
  // and each row's dQ are summed in the one-pass order, over the same blocks, so the result is
  // bitwise the same for any number of threads. Not with a left window, whose key blocks start
  // at a different offset for every row block.
  const int64_t key_blocks = ceil_div(c.S, kBc);
  const bool split = n_tasks < omp_get_max_threads() && c.wl < 0 && key_blocks > 1 &&
                     team_size(c, omp_get_max_threads(), 3) > 1;
  const int nt = split ? omp_get_max_threads() : team_size(c, n_tasks, 3);
  const int64_t chunk_blocks = split ? ceil_div(key_blocks, imin(key_blocks, 4 * static_cast<int64_t>(nt))) : 0;
  const int64_t n_chunks = split ? ceil_div(key_blocks, chunk_blocks) : 0;  // per (b, kv head)
  const int64_t q_blocks = ceil_div(c.T, kBr);
  char* base = static_cast<char*>(ws.reserve(di_bytes + per * nt));
  float* di_all = reinterpret_cast<float*>(base);  // [B, Hq, T] rowsum(dO * O)
  const bool mask_grad = g.dmask != nullptr && c.am != nullptr;
  const int64_t mb_n = c.ams[0] == 0 ? 1 : c.B, mh_n = c.ams[1] == 0 ? 1 : c.Hq;
  const int64_t mt_n = c.ams[2] == 0 ? 1 : ceil_div(c.T, kBr);
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    Arena a{base + di_bytes + per * tid};
    BwdScratch s = carve_bwd(a, c, g);
    if (!c.sigmoid) {
      for (int64_t bh = tid; bh < c.B * c.Hq; bh += team) {
        const int64_t b = bh / c.Hq, h = bh % c.Hq;
        for (int64_t i = 0; i < c.T; ++i) {
          const float* go = g.dout + b * g.dos[0] + h * g.dos[1] + i * g.dos[2];
          const float* o = c.o + b * c.os[0] + h * c.os[1] + i * c.os[2];
          di_all[bh * c.T + i] = row_dot(go, g.dos[3], o, c.os[3], c.Dv);
        }
      }
    }
#pragma omp barrier
    if (!split) {
      for (int64_t task = tid; task < n_tasks; task += team)
        backward_task(c, g, s, task / c.Hkv, task % c.Hkv, di_all,
                      {.hg0 = 0, .hg1 = c.group, .i_begin = 0, .i_end = c.T, .key_begin = 0, .key_end = c.S});
    } else {
      // dK/dV and dQ are different outputs: the two passes need no barrier between them.
      // Which thread takes a task does not change its result: dynamic scheduling (the
      // causal mask makes early keys and late rows the heavy tasks).
#pragma omp for schedule(dynamic, 1) nowait
      for (int64_t task = 0; task < n_tasks * n_chunks; ++task) {
        const int64_t bkv = task / n_chunks, chunk = task % n_chunks;
        const int64_t k0 = chunk * chunk_blocks * kBc, k1 = imin(c.S, k0 + chunk_blocks * kBc);
        backward_task(c, g, s, bkv / c.Hkv, bkv % c.Hkv, di_all,
                      {.hg0 = 0, .hg1 = c.group, .i_begin = 0, .i_end = c.T, .key_begin = k0, .key_end = k1,
                       .q = false});
      }
#pragma omp for schedule(dynamic, 1) nowait
      for (int64_t task = 0; task < n_tasks * c.group * q_blocks; ++task) {
        const int64_t qb = task % q_blocks, hg = (task / q_blocks) % c.group, bkv = task / (q_blocks * c.group);
        backward_task(c, g, s, bkv / c.Hkv, bkv % c.Hkv, di_all,
                      {.hg0 = hg, .hg1 = hg + 1, .i_begin = qb * kBr, .i_end = imin(c.T, (qb + 1) * kBr),
                       .key_begin = 0, .key_end = 0, .kv = false});
      }
    }
    if (mask_grad) {
      for (int64_t task = tid; task < mb_n * mh_n * mt_n; task += team) {
        const int64_t mt = task % mt_n, mh = (task / mt_n) % mh_n, mb = task / (mt_n * mh_n);
        const int64_t t0 = c.ams[2] == 0 ? 0 : mt * kBr;
        const int64_t t1 = c.ams[2] == 0 ? c.T : imin(c.T, t0 + kBr);
        mask_grad_task(c, g, s, mb, mh, t0, t1, di_all);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Weights from the saved lse, for chosen heads and rows only.

void weights_impl(const FlashParams& p, const FlashWeightsRequest& req, FlashWorkspace& ws) {
  const Ctx c = make_ctx(p);
  GradCtx g{};
  Arena probe{nullptr};
  carve_bwd(probe, c, g);
  const size_t per = slice_bytes(probe.used);
  const int nt = omp_get_max_threads();
  char* base = static_cast<char*>(ws.reserve(per * nt));
  const int64_t n_rows = req.row_end - req.row_begin;
  const int64_t n_qb = ceil_div(n_rows, kBr);
  const int64_t n_tasks = static_cast<int64_t>(req.heads.size()) * n_qb;
  const FlashHead* heads = req.heads.data();
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    Arena a{base + per * tid};
    BwdScratch s = carve_bwd(a, c, g);
    Rows& rows = s.rows;
    for (int64_t task = tid; task < n_tasks; task += team) {
      const int64_t hx = task / n_qb, qb = task % n_qb;
      const int64_t b = heads[hx].batch, h = heads[hx].head, kvh = h / c.group;
      const int64_t i0 = req.row_begin + qb * kBr;
      set_rows(rows, h, i0, req.row_end);
      const int R = rows.R, Rp = rows.Rp;
      float* out = req.weights + (hx * n_rows + (i0 - req.row_begin)) * c.S;  // [R, S]
      pack_transposed(s.qt, Rp, q_row(c, b, rows, 0), c.qs[2], R, Rp, c.D, c.qs[3], c.q_factor);
      for (int r = 0; r < Rp; ++r) s.lse2[r] = 0.0f;
      if (!c.sigmoid) {
        for (int r = 0; r < R; ++r) {
          const float lse = c.lse[(b * c.Hq + h) * c.T + rows.ri[r]];
          s.lse2[r] = lse == -kInf ? kInf : lse * kLog2e;
        }
      }
      int64_t jlo, jhi;
      rows_key_range(c, b, rows, 0, c.S, &jlo, &jhi);
      for (int r = 0; r < R; ++r) std::memset(out + r * c.S, 0, sizeof(float) * c.S);
      const float* kbase = c.k + b * c.ks[0] + kvh * c.ks[1];
      for (int64_t j0 = jlo; j0 < jhi; j0 += kBc) {
        const int64_t Bn = imin(kBc, jhi - j0);
        const Cover cover = classify(c, rows, j0, j0 + Bn);
        if (cover == Cover::kNone) continue;
        gemm(Bn, Rp, c.D, kbase + j0 * c.ks[2], c.ks[2], c.ks[3], s.qt, Rp, s.st, Rp, false);
        if (cover == Cover::kPartial) apply_masks(c, rows, b, j0, Bn, s.st);
        weights_from_scores(c, s.st, s.lse2, Bn, Rp);
        for (int r = 0; r < R; ++r)
          for (int64_t jj = 0; jj < Bn; ++jj) out[r * c.S + j0 + jj] = s.st[jj * Rp + r];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Diagnostic (bench/attention_bench.cc, BM_FlashBlock): the forward's work on one block of
// kBr rows x kBc keys, `reps` times, with the same micro-kernels as forward_rows. Stage 0:
// the two block products S^T = K Q^T and O += P V on operands that stay in the cache;
// stage 1: with the online softmax between them; stage 2: as 1, with each repetition
// reading the next 64 keys and values of 2,048 in turn (1-2 MiB, served from L2/L3), as a
// row block of an L = 2048 head does; stages 3 and 4:
// S^T = K Q^T alone and O += P V alone; stage 5: O += P V alone over 4 key blocks at once
// (the reduction a kernel keeping O in registers for 256 keys would run); stages 6 and 7:
// stages 1 and 2 with the scores and softmax in one pass (scores_softmax), as forward_rows
// runs every full block. What the kernel loses beyond stage 7 is its
// per-row-block work (packing Q, writing O) and scheduling. Returns the seconds the
// repetitions took (set-up excluded) and their flops in *flops.
double block_probe_impl(int64_t D, int64_t reps, int stage, double* flops) {
  constexpr int64_t kKeys = 2048;
  const bool streaming = stage == 2 || stage == 7, one_pass = stage >= 6;
  const bool scores = stage <= 3 || one_pass, weights_v = stage != 3;  // which products run
  const int64_t red = stage == 5 ? 4 * kBc : kBc;  // keys per P V product
  const int64_t Dvp = round_up(D, kW), keys = streaming ? kKeys : red;
  const int64_t floats = D * kBr + 2 * keys * Dvp + red * kBr + kBr * Dvp + 3 * kBr;
  const size_t bytes = static_cast<size_t>(round_up(floats * 4, 64));
  float* buf = static_cast<float*>(std::aligned_alloc(64, bytes));
  HEED_CHECK(buf != nullptr, "block_probe: cannot allocate ", bytes, " bytes");
  float* k = buf;
  float* v = k + keys * Dvp;
  FwdScratch s{};
  s.qt = v + keys * Dvp;
  s.st = s.qt + D * kBr;
  s.o = s.st + red * kBr;
  s.m = s.o + kBr * Dvp;
  s.l = s.m + kBr;
  s.alpha = s.l + kBr;
  // Small values: the unnormalised products of stage 0 stay far from overflow.
  for (int64_t x = 0; x < floats; ++x) {
    const uint64_t h = static_cast<uint64_t>(x) * 2654435761u % 201;  // 0..200, scattered
    buf[x] = 1e-4f * static_cast<float>(static_cast<int64_t>(h) - 100);
  }
  for (int r = 0; r < kBr; ++r) {
    s.m[r] = -kInf;
    s.l[r] = 0.0f;
  }
  // Block sizes and K's column stride as run-time values, as forward_rows has them:
  // constants would let the compiler specialise the micro-kernels for this probe alone.
  volatile int64_t opaque_bn = kBc, opaque_red = red, opaque_one = 1;
  volatile int opaque_r = kBr;
  const int64_t Bn = opaque_bn, Red = opaque_red, k_col = opaque_one;
  const int R = opaque_r;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t rep = 0; rep < reps; ++rep) {
    const int64_t j0 = streaming ? rep % (kKeys / kBc) * kBc : 0;
    if (one_pass)
      scores_softmax(s, k + j0 * Dvp, Dvp, k_col, Bn, D, R, R, Dvp);
    else if (scores)
      gemm(Bn, R, D, k + j0 * Dvp, Dvp, k_col, s.qt, R, s.st, R, false);
    if (stage == 1 || stage == 2) softmax_block(s, Bn, R, R, Dvp);
    if (weights_v) gemm(R, Dvp, Red, s.st, 1, R, v + j0 * Dvp, Dvp, s.o, Dvp, true);
  }
  const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
  std::free(buf);
  const double products = (scores ? 1.0 : 0.0) + (weights_v ? 1.0 : 0.0);
  *flops = products * 2.0 * kBr * red * static_cast<double>(D) * static_cast<double>(reps);
  return dt.count();
}

}  // namespace

double block_probe(int64_t D, int64_t reps, int stage, double* flops) {
  return block_probe_impl(D, reps, stage, flops);
}
void forward(const FlashParams& p, FlashWorkspace& ws) { forward_impl(p, ws); }
void backward(const FlashParams& p, const FlashGrads& g, FlashWorkspace& ws) { backward_impl(p, g, ws); }
void weights(const FlashParams& p, const FlashWeightsRequest& r, FlashWorkspace& ws) {
  weights_impl(p, r, ws);
}

}  // namespace heed::kernels::cpu::HEED_FLASH_NS
