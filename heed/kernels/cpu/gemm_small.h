// C = alpha * A B^T + beta * C for few rows of A, without packing B (f32, AVX-512).
//
// The shape of a linear layer at inference: A is a few token rows [m, k], B a weight matrix
// [n, k] stored as PyTorch stores it. A packing BLAS copies all of B into panels on every
// call, which for m of a few dozen costs as much as the product itself (decoding one step at
// a time, or an encoder pass over one short sequence). Here each block of 8 rows of B is
// read once, straight from where it lies, and every row of A meets it while it sits in L1:
// 3 rows of A x 8 rows of B give 24 vector accumulators over k, reduced at the end with
// horizontal adds into 8 contiguous outputs per row.
#pragma once

#include <cstdint>

namespace heed::kernels::cpu {

// Whether gemm_nt_small can run on this CPU (AVX-512 F/DQ/VL).
bool gemm_nt_small_available();

// C[i, j] = alpha * sum_p A[i, p] B[j, p] + beta * C[i, j] for i < m, j < n, row-major with
// leading dimensions lda, ldb, ldc (unit column stride). beta == 0 never reads C; alpha == 0
// never reads A or B. Each element
// is computed the same way whatever m and n are (the same sums in the same order), so row or
// column tiles of one product give the same bits as the whole.
void gemm_nt_small(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                   int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace heed::kernels::cpu
