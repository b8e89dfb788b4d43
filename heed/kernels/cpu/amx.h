// AMX primitives shared by the bf16 kernels (fused attention, GEMM): eight tile registers of
// 16 rows x 64 bytes; tdpbf16ps does C[16 x 16] (f32) += A[16 x 32] (bf16 rows) B[16 x 32]
// (bf16 pairs). Include only from *_avx512.cc files, and run only where cpu_has_amx_bf16().
#pragma once

#include <cstdint>

// The compiler's AMX intrinsics are asm statements that do not tell it which memory a tile
// load reads; these add the "memory" clobber so buffers are written before they are loaded.
#define HEED_TILE_LOAD(t, base, stride) \
  asm volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"(base), "r"(static_cast<long>(stride)) : "memory")
#define HEED_TILE_STORE(t, base, stride) \
  asm volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"(base), "r"(static_cast<long>(stride)) : "memory")
#define HEED_TILE_ZERO(t) asm volatile("tilezero %%tmm" #t ::)
#define HEED_TILE_DP(c, a, b) asm volatile("tdpbf16ps %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)

namespace heed::kernels::cpu::amx {

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Every tile register 16 rows x 64 bytes, on the calling thread (until release_tiles).
inline void configure_full_tiles() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  asm volatile("ldtilecfg %0" ::"m"(cfg));
}

inline void release_tiles() { asm volatile("tilerelease" ::); }

}  // namespace heed::kernels::cpu::amx
