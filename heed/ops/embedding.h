// Embedding lookup: rows of a [V, C] table picked by integer indices of any shape.
#pragma once

#include <cstdint>

#include "heed/tensor/tensor.h"

namespace heed {

// weight [V, C], indices i64 [...] with values in [0, V) -> [..., C]. The row padding_idx
// (-1: none) receives no gradient, as in torch.nn.functional.embedding.
Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx = -1);

}  // namespace heed
