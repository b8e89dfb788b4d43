// Matrix products through BLAS, batched with broadcasting over leading dimensions.
#pragma once

#include "heed/tensor/tensor.h"

namespace heed {

// a [..., M, K] @ b [..., K, N] -> [..., M, N]; 1-D operands are treated as in NumPy.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., I] @ weight[O, I]^T (+ bias [O]) -> [..., O], as torch.nn.functional.linear: one
// product, the bias added as the product is stored (no pass of its own).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// relu(linear(x, weight, bias)) in the same single product (the ReLU applied as it is stored);
// equal to the composed ops in value and gradient.
Tensor linear_relu(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
// linear(linear_relu(x, w1, b1), w2, b2), a ReLU feed-forward block, as one autograd node: the
// same products, and in backward ReLU's mask applied by the GEMM that forms the hidden
// gradient. Equal to the composed ops in value and gradient.
Tensor linear_relu_linear(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2);

}  // namespace heed
