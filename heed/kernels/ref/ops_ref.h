// Naive double-precision references for every op in heed/ops, used only by tests: obvious
// loops over multi-indices, double accumulators, no shared code with the kernels under test.
// Every function reads its inputs through their strides and returns a contiguous f64 tensor.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "heed/tensor/tensor.h"

namespace heed::ref {

// ---- inputs for tests: the same logical values in different memory layouts ----
enum class Layout {
  kContiguous,
  kTransposed,  // a transposed view of a contiguous tensor (last two dims swapped in memory)
  kStrided,     // every second element of a wider tensor, at an offset
  kExpanded,    // a stride-0 broadcast of a tensor whose first dimension is 1
};
inline constexpr Layout kAllLayouts[] = {Layout::kContiguous, Layout::kTransposed, Layout::kStrided,
                                         Layout::kExpanded};
const char* layout_name(Layout layout);
// A seeded tensor of logical `shape` in `layout`: standard normal values, or uniform in
// [lo, hi) when lo < hi. Layouts that do not fit the shape (rank 1 transposed) fall back to kStrided.
Tensor make_input(const Shape& shape, Layout layout, uint64_t seed, DType dtype = DType::kF32, double lo = 0,
                  double hi = 0);

// ---- values ----
// Logical values of any strided tensor in row-major order, read by explicit index arithmetic.
std::vector<double> values(const Tensor& t);
Tensor make(const std::vector<double>& values, const Shape& shape);  // a contiguous f64 tensor

// ---- elementwise ----
Tensor unary(const Tensor& x, const std::function<double(double)>& f);
Tensor binary(const Tensor& a, const Tensor& b, const std::function<double(double, double)>& f);  // broadcast
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
double sigmoid(double v);
double gelu(double v);  // exact, x * Phi(x)

// ---- shape ----
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor index_select(const Tensor& x, int64_t dim, const std::vector<int64_t>& index);
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- reductions ----
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim);
Tensor max(const Tensor& x, int64_t dim, bool keepdim);

// ---- products ----
Tensor matmul(const Tensor& a, const Tensor& b);  // [..., M, K] @ [..., K, N], 1-D as NumPy
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// ---- softmax, layer norm, dropout, embedding, cross-entropy ----
Tensor softmax(const Tensor& x, int64_t dim, bool log);
// Gradient of sum(g * softmax(x)) (or log_softmax) with respect to x.
Tensor softmax_grad(const Tensor& x, const Tensor& g, int64_t dim, bool log);
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
struct LayerNormGrads {
  Tensor x, weight, bias;
};
LayerNormGrads layer_norm_grad(const Tensor& x, const Tensor& weight, const Tensor& g, double eps);
Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t stream);
Tensor embedding(const Tensor& weight, const Tensor& indices);
Tensor embedding_grad(const Tensor& indices, const Tensor& g, int64_t v, int64_t padding_idx);
// Per-target losses [...] (0 where ignored); logits [..., V].
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, double label_smoothing, int64_t ignore_index);
// Gradient of sum_r scale[r] * loss[r] with respect to the logits.
Tensor cross_entropy_grad(const Tensor& logits, const Tensor& targets, double label_smoothing,
                          int64_t ignore_index, const std::vector<double>& scale);

}  // namespace heed::ref
