// Reductions over chosen dimensions (empty dims = all), with keepdim as in PyTorch.
#pragma once

#include <vector>

#include "heed/tensor/tensor.h"

namespace heed {

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Maximum over one dimension; the gradient flows to the first maximal element.
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);

}  // namespace heed
