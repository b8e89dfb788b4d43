// Matrix products through BLAS, batched with broadcasting over leading dimensions.
#pragma once

#include "heed/tensor/tensor.h"

namespace heed {

// a [..., M, K] @ b [..., K, N] -> [..., M, N]; 1-D operands are treated as in NumPy.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., I] @ weight[O, I]^T (+ bias [O]) -> [..., O], as torch.nn.functional.linear.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace heed
