// Losses. cross_entropy follows torch.nn.functional.cross_entropy with class indices,
// with the classes on the last dimension.
#pragma once

#include <cstdint>

#include "heed/tensor/tensor.h"

namespace heed {

enum class Reduction { kMean, kSum, kNone };

struct CrossEntropyOptions {
  double label_smoothing = 0;   // eps in [0, 1]: target (1 - eps) one-hot + eps uniform
  int64_t ignore_index = -100;  // targets equal to this contribute no loss and no gradient
  Reduction reduction = Reduction::kMean;
};

// logits [..., V], targets i64 [...] with values in [0, V) or ignore_index. Per target:
// (1 - eps) * -log p_t + eps * mean_c(-log p_c). kMean divides the sum by the number of
// non-ignored targets (0 when all are ignored), kSum sums, kNone returns [...] (0 where ignored).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& options = {});

}  // namespace heed
