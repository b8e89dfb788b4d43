// softmax and log_softmax over one dimension, numerically stable (max-subtracted).
// A row whose entries are all -inf (a fully masked attention row) gives zeros from
// softmax (-inf from log_softmax) and a zero gradient, never NaN.
#pragma once

#include "heed/tensor/tensor.h"

namespace heed {

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

}  // namespace heed
