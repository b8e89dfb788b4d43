// CPU softmax / log-softmax over the rows of a strided tensor, forward and backward.
// Rows run in parallel (static schedule); each row is computed sequentially, so results
// do not depend on the thread count.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace heed::kernels::cpu {

// Where the rows of a strided tensor start, and the step between elements of a row.
struct RowIndex {
  std::vector<int64_t> starts;  // offset of element 0 of every row
  int64_t stride = 1;
};

// The rows along dimension `dim` of a tensor with this shape and these strides, in row-major
// order over the other dimensions (the same order for every tensor of the same shape).
RowIndex row_index(std::span<const int64_t> shape, std::span<const int64_t> strides, int64_t dim);

struct SoftmaxParams {
  int64_t n = 0;     // row length
  bool log = false;  // log_softmax instead of softmax
};

// y = softmax(x) (or log_softmax) along every row. A row of all -inf gives zeros (softmax)
// or -inf (log_softmax) instead of NaN.
void softmax_forward(const SoftmaxParams& p, const float* x, const RowIndex& xi, float* y, const RowIndex& yi);
void softmax_forward(const SoftmaxParams& p, const double* x, const RowIndex& xi, double* y, const RowIndex& yi);

// Gradient of the input from the output y and its gradient g:
// softmax g_x = y * (g - sum(g * y)); log_softmax g_x = g - exp(y) * sum(g) (zero for an
// all -inf row).
void softmax_backward(const SoftmaxParams& p, const float* y, const RowIndex& yi, const float* g,
                      const RowIndex& gi, float* gx, const RowIndex& gxi);
void softmax_backward(const SoftmaxParams& p, const double* y, const RowIndex& yi, const double* g,
                      const RowIndex& gi, double* gx, const RowIndex& gxi);

}  // namespace heed::kernels::cpu
