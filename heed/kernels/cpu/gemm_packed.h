// heed's own f32 GEMM for products of many rows (AVX-512): C = act(alpha op(A) op(B) + beta C + bias).
//
// The shape of training a Transformer: 1,000-2,000 token rows against weights of 256-1024
// columns. OpenBLAS copies both operands into panels on every call (12 % of a G2P training
// step) and clears C before a beta = 0 product (another pass); heed then adds the bias and
// applies the activation in further passes. Here:
// - op(B) is copied once per call into panels of 32 columns x 256 k (transposed weights
//   through 16 x 16 register transposes);
// - op(A) is read where it lies when it is row-major (x, dY): broadcast element by element
//   from its rows; a transposed A (dY^T in a weight gradient), whose rows are 4 KiB apart and
//   would collide in L1's sets, is copied 168 rows x 256 k at a time;
// - a 14 x 32 register tile (28 accumulators) runs over 256 k at a time, its result stored
//   with alpha, beta, the bias and ReLU applied on the way out (no pass of its own); blocks of
//   at least 512 columns run each row tile across all panels (A's rows stay in L1), narrower
//   ones each panel across all row tiles (the panel stays in L1).
// Each element of C is a sum over k in the same order (blocks of 256, in order, each
// accumulated from k = 0 up) whatever the tile, row count or thread count, so row or column
// tiles of one product give the same bits as the whole.
#pragma once

#include <cstdint>

namespace heed::kernels::cpu {

// Whether gemm_packed can run on this CPU (AVX-512 F, BW, DQ, VL).
bool gemm_packed_available();

// What happens to each element of C after the product: + bias[j] (bias may be null), then
// max(., 0) when relu, then 0 wherever relu_grad_of[i * ldc + j] <= 0 (relu_grad_of laid out
// as C; may be null). Applied after alpha and beta.
struct GemmEpilogueF32 {
  const float* bias = nullptr;
  bool relu = false;
  const float* relu_grad_of = nullptr;
};

// C[i, j] = act(alpha * sum_p op(A)[i, p] op(B)[p, j] + beta * C[i, j] + bias[j]) for i < m,
// j < n, row-major with leading dimensions lda, ldb, ldc; op(X) = X^T when trans_x. beta == 0
// never reads C; alpha == 0 or k == 0 never reads A or B. Runs on the calling thread, with
// per-thread scratch memory (1.2 MiB) allocated on its first call; returns false, having
// written nothing, only when that allocation fails.
bool gemm_packed(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                 const GemmEpilogueF32& epilogue = {});

// C = act(beta C + bias) with no product: what gemm_packed and gemm_amx_bf16 do for k == 0 or
// alpha == 0 (A and B unread). Compiled with the AVX-512 flags: call only where
// gemm_packed_available().
void gemm_scale_only(int64_t m, int64_t n, float beta, float* c, int64_t ldc, const GemmEpilogueF32& epilogue);

}  // namespace heed::kernels::cpu
