// Gradient clipping by the global L2 norm, as torch.nn.utils.clip_grad_norm_.
#pragma once

#include <vector>

#include "heed/tensor/tensor.h"

namespace heed::train {

// Scales every defined gradient by max_norm / (norm + 1e-6) when that factor is below 1,
// where norm is the L2 norm of all gradients together. Returns norm (before clipping).
// Parameters without a gradient are skipped. A non-finite norm is returned as is and no
// gradient is scaled (the caller decides whether to skip the step).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// The factor clip_grad_norm would scale the gradients by for this norm: max_norm /
// (norm + 1e-6) when below 1, else 1 (also for a non-finite norm). Pass it to
// Optimizer::step() to clip inside the update instead of in a separate pass.
double clip_coefficient(double norm, double max_norm);

// The global L2 norm of the gradients, without changing them.
double grad_norm(const std::vector<Tensor>& params);

}  // namespace heed::train
