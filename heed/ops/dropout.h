// Dropout with counter-based randomness: the same (seed, stream) always drops the same
// elements, whatever the thread count.
#pragma once

#include <cstdint>

#include "heed/tensor/tensor.h"

namespace heed {

struct DropoutOptions {
  double p = 0.5;         // probability of dropping an element, in [0, 1]
  bool training = true;   // false: identity
  uint64_t seed = 0;
  uint64_t stream = 0;    // separates independent dropout sites under one seed
};

// Element i (row-major index into the contiguous output) is kept iff
// heed::random::dropout_keep(seed, stream, i, p), and kept values are scaled by 1 / (1 - p).
// This index rule is shared with the fused attention kernel. p = 0 or !training returns x
// itself; p = 1 gives zeros.
Tensor dropout(const Tensor& x, const DropoutOptions& options);

// add(residual, dropout(x, options)), bitwise equal to it in value and gradients: a
// Transformer's residual branch. One pass when training with 0 < p < 1 and both have the
// same shape and dtype; otherwise the two ops.
Tensor dropout_add(const Tensor& residual, const Tensor& x, const DropoutOptions& options);

// dropout(relu(x), options) in one pass, bitwise equal to it in value and gradient; the
// backward reads only the output (no random words drawn again). The feed-forward block's
// hidden activation in training.
Tensor relu_dropout(const Tensor& x, const DropoutOptions& options);

}  // namespace heed
