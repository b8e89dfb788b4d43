// A bf16 GEMM on AMX tiles for f32 operands: C = act(alpha op(A) op(B) + beta C + bias), the
// contract of gemm_packed (gemm_packed.h), except that op(A) and op(B) are rounded to bf16
// (nearest even) as they are packed and each product is summed in f32 by tdpbf16ps. What
// PyTorch calls a float32 matmul at "medium" precision: the mixed-precision training of
// Transformers with f32 master weights, f32 activations between ops and f32 sums.
//
// Why: a G2P training step spends ~70 % of its time in f32 products that run at ~75 % of the
// AVX-512 FMA peak; AMX's tdpbf16ps does 1,024 multiply-adds per 16 cycles per tile.
// - op(B) is packed 512 k x 512 columns at a time into tiles of 16 pair rows x 16 columns
//   (the layout tdpbf16ps reads), op(A) 32 rows x 512 k at a time into 16 x 32 row tiles;
// - each 32 x 32 block of C accumulates in four tile registers over the 512 k, then goes
//   through the same epilogue as gemm_packed (alpha, beta, bias, ReLU, ReLU's backward).
// Each element of C is summed the same way (blocks of 512 k in order, 32 at a time) whatever
// the tile, row count or thread count, so tiles of one product give the same bits as the whole.
#pragma once

#include <cstdint>

#include "heed/kernels/cpu/gemm_packed.h"

namespace heed::kernels::cpu {

// Whether gemm_amx_bf16 can run: AMX-BF16 and AVX512-BF16 on the CPU, and the kernel's
// permission for tile state (Linux asks for it once, see cpu_has_amx_bf16).
bool gemm_amx_available();

// As gemm_packed, with bf16 products. Runs on the calling thread with per-thread scratch
// (~0.6 MiB) allocated on its first call; returns false, having written nothing, when that
// allocation fails or AMX is not available.
bool gemm_amx_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                   int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                   const GemmEpilogueF32& epilogue = {});

}  // namespace heed::kernels::cpu
