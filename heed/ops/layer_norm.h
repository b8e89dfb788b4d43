// Layer normalisation over the last dimension, as torch.nn.functional.layer_norm.
#pragma once

#include "heed/tensor/tensor.h"

namespace heed {

// x [..., C] normalised over C (= normalized_size) with biased variance; weight [C] and
// bias [C] are optional (undefined tensors: 1 and 0).
Tensor layer_norm(const Tensor& x, int64_t normalized_size, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);

}  // namespace heed
