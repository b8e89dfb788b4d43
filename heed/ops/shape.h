// Views and data movement with gradients: reshape, permute, slice, expand, concat,
// split, index_select. Views share storage with their input.
#pragma once

#include <vector>

#include "heed/tensor/tensor.h"

namespace heed {

Tensor reshape(const Tensor& x, const Shape& shape);  // one -1 may be inferred
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor contiguous(const Tensor& x);
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
// Rows of x along dim picked by an i64 index vector (values in [0, size(dim))).
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// Sums a (broadcast) gradient down to `shape`: the inverse of broadcasting.
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace heed
