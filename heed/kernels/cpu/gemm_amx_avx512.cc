// gemm_amx_bf16 (compiled with the AVX-512 flags; AMX instructions as inline assembly, which
// needs no compiler flag). Called only when gemm_amx_available().
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "heed/kernels/cpu/amx.h"
#include "heed/kernels/cpu/flash_attention.h"  // cpu_has_amx_bf16
#include "heed/kernels/cpu/gemm_amx.h"
#include "heed/kernels/cpu/vec_avx512.h"

namespace heed::kernels::cpu {

namespace {

constexpr int64_t kKc = 512;  // k per packed block (16 chunks of 32)
constexpr int64_t kNc = 512;  // columns per packed block of B (512 x 512 bf16 = 512 KiB, in L2)
constexpr int64_t kMb = 32;   // rows per packed block of A (32 x 512 bf16 = 32 KiB, in L1)
constexpr int64_t kTile = 512;  // bf16 elements per 16 x 64-byte tile

// Per-thread scratch, allocated on a thread's first product and reused.
struct Scratch {
  uint16_t* b = nullptr;  // packed op(B): [kNc / 16 strips][kKc / 32 chunks] tiles
  uint16_t* a = nullptr;  // packed op(A): [2 strips][kKc / 32 chunks] tiles
  float* t = nullptr;     // one 32 x 32 block of sums
  bool ok = false;
};

Scratch& scratch() {
  struct Owner {
    Scratch s;
    Owner() {
      s.b = static_cast<uint16_t*>(std::aligned_alloc(64, sizeof(uint16_t) * kKc * kNc));
      s.a = static_cast<uint16_t*>(std::aligned_alloc(64, sizeof(uint16_t) * kKc * kMb));
      s.t = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kMb * 32));
      s.ok = s.b != nullptr && s.a != nullptr && s.t != nullptr;
    }
    ~Owner() {
      std::free(s.b);
      std::free(s.a);
      std::free(s.t);
    }
  };
  thread_local Owner owner;
  return owner.s;
}

using avx512::bf16_of;
using avx512::bf16_pairs;
using avx512::lanes;

// op(A)[i0 : i0 + 32, p0 : p0 + kc] -> two strips of `chunks` row tiles; rows past m and k
// past kc are zero. op(A)[i, p] = a[i * lda + p], or a[p * lda + i] when trans_a.
void pack_a(bool trans_a, const float* a, int64_t lda, int64_t i0, int64_t m, int64_t p0, int64_t kc,
            int64_t chunks, uint16_t* out) {
  const int64_t rows = std::min<int64_t>(kMb, m - i0);
  if (!trans_a) {
    for (int64_t r = 0; r < kMb; ++r) {
      const float* src = a + (i0 + std::min(r, rows - 1)) * lda + p0;  // (rows past m: zeros, unread)
      uint16_t* dst = out + (r / 16) * chunks * kTile + (r % 16) * 32;
      for (int64_t q = 0; q < chunks; ++q) {
        __m512i v = _mm512_setzero_si512();
        if (r < rows) {
          const int64_t w = kc - q * 32;
          v = bf16_of(_mm512_maskz_loadu_ps(lanes(w), src + q * 32), _mm512_maskz_loadu_ps(lanes(w - 16), src + q * 32 + 16));
        }
        _mm512_store_si512(dst + q * kTile, v);
      }
    }
    return;
  }
  // Rows of op(A) are columns of A: 16 x 16 blocks through a register transpose.
  for (int64_t strip = 0; strip < 2; ++strip) {
    const __mmask16 cols = lanes(rows - strip * 16);
    for (int64_t q = 0; q < chunks; ++q) {
      __m512 lo[16], hi[16];
      const float* col = a + p0 * lda + i0 + (cols != 0 ? strip * 16 : 0);
      for (int x = 0; x < 16; ++x) {
        const int64_t p = q * 32 + x;
        lo[x] = p < kc ? _mm512_maskz_loadu_ps(cols, col + p * lda) : _mm512_setzero_ps();
        hi[x] = p + 16 < kc ? _mm512_maskz_loadu_ps(cols, col + (p + 16) * lda) : _mm512_setzero_ps();
      }
      avx512::Vec::transpose(lo);
      avx512::Vec::transpose(hi);
      uint16_t* dst = out + (strip * chunks + q) * kTile;
      for (int r = 0; r < 16; ++r) _mm512_store_si512(dst + r * 32, bf16_of(lo[r], hi[r]));
    }
  }
}

// op(B)[p0 : p0 + kc, j0 : j0 + nc] -> strips of 16 columns, each `chunks` pair tiles: row pr
// of chunk q holds (op(B)[32q + 2pr, j], op(B)[32q + 2pr + 1, j]) for the strip's 16 j.
// Columns past nc (up to a multiple of 32) and k past kc are zero.
void pack_b(bool trans_b, const float* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
            int64_t chunks, uint16_t* out) {
  const int64_t strips = (nc + 31) / 32 * 2;
  for (int64_t s = 0; s < strips; ++s) {
    const int64_t jw = nc - s * 16;  // real columns in this strip (may be <= 0)
    for (int64_t q = 0; q < chunks; ++q) {
      uint16_t* dst = out + (s * chunks + q) * kTile;
      if (!trans_b) {  // rows of op(B) are rows of B: pairs of rows, interleaved
        const float* col = b + p0 * ldb + j0 + (jw > 0 ? s * 16 : 0);
        for (int pr = 0; pr < 16; ++pr) {
          const int64_t p = q * 32 + 2 * pr;
          const __m512 lo = p < kc ? _mm512_maskz_loadu_ps(lanes(jw), col + p * ldb) : _mm512_setzero_ps();
          const __m512 hi = p + 1 < kc ? _mm512_maskz_loadu_ps(lanes(jw), col + (p + 1) * ldb) : _mm512_setzero_ps();
          _mm512_store_si512(dst + pr * 32, bf16_pairs(lo, hi));
        }
        continue;
      }
      // Column j of op(B) is row j of B, whose consecutive k already form the pairs: each
      // row's 16 pairs (32-bit units) become one column of the tile, a 16 x 16 transpose.
      __m512 u[16];
      const int64_t w = kc - q * 32;
      for (int j = 0; j < 16; ++j) {
        if (j >= jw) {
          u[j] = _mm512_setzero_ps();
          continue;
        }
        const float* src = b + (j0 + s * 16 + j) * ldb + p0 + q * 32;
        u[j] = reinterpret_cast<__m512>(bf16_of(_mm512_maskz_loadu_ps(lanes(w), src),
                                                _mm512_maskz_loadu_ps(lanes(w - 16), src + 16)));
      }
      avx512::Vec::transpose(u);
      for (int pr = 0; pr < 16; ++pr) _mm512_store_ps(reinterpret_cast<float*>(dst + pr * 32), u[pr]);
    }
  }
}

// ---- AMX (amx.h): tiles 0-3 hold the 2 x 2 blocks of C, 4-5 A's strips, 6-7 B's strips. ----

// t[32 x 32] (row stride 32 floats) = A-block (two strips) x B strips (s, s + 1), over chunks.
inline void block_32x32(int64_t chunks, const uint16_t* a, const uint16_t* b, float* t) {
  HEED_TILE_ZERO(0);
  HEED_TILE_ZERO(1);
  HEED_TILE_ZERO(2);
  HEED_TILE_ZERO(3);
  const uint16_t* a1 = a + chunks * kTile;
  const uint16_t* b1 = b + chunks * kTile;
  for (int64_t q = 0; q < chunks; ++q) {
    HEED_TILE_LOAD(4, a + q * kTile, 64);
    HEED_TILE_LOAD(6, b + q * kTile, 64);
    HEED_TILE_DP(0, 4, 6);
    HEED_TILE_LOAD(7, b1 + q * kTile, 64);
    HEED_TILE_DP(1, 4, 7);
    HEED_TILE_LOAD(5, a1 + q * kTile, 64);
    HEED_TILE_DP(2, 5, 6);
    HEED_TILE_DP(3, 5, 7);
  }
  HEED_TILE_STORE(0, t, 128);
  HEED_TILE_STORE(1, t + 16, 128);
  HEED_TILE_STORE(2, t + 16 * 32, 128);
  HEED_TILE_STORE(3, t + 16 * 32 + 16, 128);
}

// How a block's sums reach C (as gemm_packed's Store).
struct Store {
  float alpha, beta;
  bool first, last;  // first k block (beta applies) / last k block (bias and ReLU apply)
  bool relu;
};

// C[0 : rows, 0 : cols] from the sums t (row stride 32).
void store_block(const float* t, int64_t rows, int64_t cols, float* c, int64_t ldc, const Store& s,
                 const float* bias, const float* grad_of) {
  const __m512 va = _mm512_set1_ps(s.alpha), vb = _mm512_set1_ps(s.beta), zero = _mm512_setzero_ps();
  for (int half = 0; half < 2; ++half) {
    const __mmask16 mk = lanes(cols - half * 16);
    if (mk == 0) continue;
    const __m512 bv = s.last && bias ? _mm512_maskz_loadu_ps(mk, bias + half * 16) : zero;
    for (int64_t r = 0; r < rows; ++r) {
      float* ci = c + r * ldc + half * 16;
      __m512 v = _mm512_mul_ps(va, _mm512_load_ps(t + r * 32 + half * 16));
      if (!s.first)
        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, ci));
      else if (s.beta != 0.f)
        v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk, ci), v);
      if (s.last) {
        if (bias) v = _mm512_add_ps(v, bv);
        if (s.relu) v = _mm512_maskz_max_ps(__mmask16(0xFFFF), v, zero);  // NaN -> 0, as heed::relu
        if (grad_of)
          v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(mk, grad_of + r * ldc + half * 16), zero,
                                                     _CMP_GT_OQ),
                                  v);
      }
      _mm512_mask_storeu_ps(ci, mk, v);
    }
  }
}

}  // namespace

bool gemm_amx_available() { return cpu_has_amx_bf16(); }

bool gemm_amx_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                   int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                   const GemmEpilogueF32& epilogue) {
  if (!gemm_amx_available()) return false;
  if (m <= 0 || n <= 0) return true;
  if (k <= 0 || alpha == 0.f) {
    gemm_scale_only(m, n, beta, c, ldc, epilogue);
    return true;
  }
  Scratch& sc = scratch();
  if (!sc.ok) return false;
  amx::configure_full_tiles();
  for (int64_t j0 = 0; j0 < n; j0 += kNc) {
    const int64_t nc = std::min(kNc, n - j0);
    for (int64_t p0 = 0; p0 < k; p0 += kKc) {
      const int64_t kc = std::min(kKc, k - p0), chunks = (kc + 31) / 32;
      pack_b(trans_b, b, ldb, p0, kc, j0, nc, chunks, sc.b);
      const Store s{alpha, beta, p0 == 0, p0 + kc == k, epilogue.relu};
      for (int64_t i0 = 0; i0 < m; i0 += kMb) {
        pack_a(trans_a, a, lda, i0, m, p0, kc, chunks, sc.a);
        const int64_t rows = std::min(kMb, m - i0);
        for (int64_t jb = 0; jb < nc; jb += 32) {
          block_32x32(chunks, sc.a, sc.b + (jb / 16) * chunks * kTile, sc.t);
          const int64_t j = j0 + jb;
          store_block(sc.t, rows, std::min<int64_t>(32, nc - jb), c + i0 * ldc + j, ldc, s,
                      epilogue.bias ? epilogue.bias + j : nullptr,
                      epilogue.relu_grad_of ? epilogue.relu_grad_of + i0 * ldc + j : nullptr);
        }
      }
    }
  }
  amx::release_tiles();
  return true;
}

}  // namespace heed::kernels::cpu
