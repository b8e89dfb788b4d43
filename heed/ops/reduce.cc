// Reductions. Each output element is accumulated sequentially (in double for f32),
// so results do not depend on the thread count.
#include "heed/ops/reduce.h"

#include <algorithm>
#include <limits>

#include "heed/autograd/graph.h"
#include "heed/kernels/cpu/elementwise.h"
#include "heed/ops/elementwise.h"
#include "heed/ops/shape.h"
#include "heed/tensor/strided.h"

namespace heed {

namespace {

struct ReducePlan {
  Shape keep_shape;   // input shape with reduced dims set to 1
  Shape out_shape;    // keep_shape, or with reduced dims removed
  std::vector<bool> reduced;
  int64_t count = 1;  // elements per output
};

ReducePlan plan_reduce(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, const char* op) {
  ReducePlan p;
  p.reduced.assign(x.dim(), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, x.shape(), op);
    HEED_CHECK(!p.reduced[w], op, ": dimension ", d, " listed twice in ", shape_str(dims), " for ", x.str());
    p.reduced[w] = true;
  }
  for (int64_t i = 0; i < x.dim(); ++i) {
    p.keep_shape.push_back(p.reduced[i] ? 1 : x.size(i));
    if (p.reduced[i]) p.count *= x.size(i);
    if (!p.reduced[i] || keepdim) p.out_shape.push_back(p.reduced[i] ? 1 : x.size(i));
  }
  return p;
}

// Leading dims reduced, trailing ones kept, x contiguous (a bias gradient: column sums of
// [rows, cols]): columns split across threads, each column summed over rows in order, exactly
// as the general loop below orders its additions.
template <class T>
bool sum_leading(const Tensor& x, const ReducePlan& p, Tensor& out) {
  if (!x.is_contiguous()) return false;
  int64_t lead = 0;
  while (lead < x.dim() && p.reduced[lead]) ++lead;
  for (int64_t i = lead; i < x.dim(); ++i)
    if (p.reduced[i]) return false;
  const int64_t cols = out.numel(), rows = cols == 0 ? 0 : x.numel() / cols;
  const T* px = x.data<T>();
  T* po = out.data<T>();
  constexpr int64_t kBlock = 256;  // columns per task: 2 KiB of double sums
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (x.numel() > kernels::cpu::kParallelGrain && blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t j0 = b * kBlock, w = std::min(kBlock, cols - j0);
    double acc[kBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = px + r * cols + j0;
      for (int64_t j = 0; j < w; ++j) acc[j] += row[j];
    }
    for (int64_t j = 0; j < w; ++j) po[j0 + j] = static_cast<T>(acc[j]);
  }
  return true;
}

// Sum into a keep_shape tensor: out strides are 0 along reduced dims.
Tensor sum_kernel(const Tensor& x, const ReducePlan& p) {
  Tensor out = Tensor::empty(p.keep_shape, x.dtype());
  dispatch_float(x.dtype(), "sum", [&](auto tag) {
    using T = decltype(tag);
    if (sum_leading<T>(x, p, out)) return;
    std::vector<double> acc(out.numel(), 0.0);
    Shape ostrides = contiguous_strides(p.keep_shape);
    for (int64_t i = 0; i < x.dim(); ++i)
      if (p.reduced[i]) ostrides[i] = 0;
    const T* px = x.data<T>();
    for_each_strided2(x.shape(), x.strides(), ostrides, [&](int64_t ix, int64_t io) { acc[io] += px[ix]; });
    T* po = out.data<T>();
    for (int64_t i = 0; i < out.numel(); ++i) po[i] = static_cast<T>(acc[i]);
  });
  return out;
}

void check_reducible(const Tensor& x, const char* op) {
  HEED_CHECK(x.defined() && (x.dtype() == DType::kF32 || x.dtype() == DType::kF64), op,
             ": expected a f32 or f64 tensor, got ", x.str());
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_reducible(x, "sum");
  ReducePlan p = plan_reduce(x, dims, keepdim, "sum");
  Tensor out = sum_kernel(x, p).raw_reshape(p.out_shape);
  // grad_x = grad_out broadcast back over the reduced dims
  autograd::record("sum", out, {x}, [in = x.shape(), keep = p.keep_shape](const Tensor& g) {
    return std::vector<Tensor>{contiguous(expand(reshape(g, keep), in))};
  });
  return out;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_reducible(x, "mean");
  ReducePlan p = plan_reduce(x, dims, keepdim, "mean");
  HEED_CHECK(p.count > 0, "mean: reducing over zero elements of ", x.str());
  return mul(sum(x, dims, keepdim), 1.0 / static_cast<double>(p.count));
}

Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  check_reducible(x, "max");
  const int64_t d = wrap_dim(dim, x.shape(), "max");
  HEED_CHECK(x.size(d) > 0, "max: dimension ", d, " of ", x.str(), " is empty");
  ReducePlan p = plan_reduce(x, {d}, keepdim, "max");
  Tensor out = Tensor::empty(p.keep_shape, x.dtype());
  Tensor arg = Tensor::empty(p.keep_shape, DType::kI64);
  dispatch_float(x.dtype(), "max", [&](auto tag) {
    using T = decltype(tag);
    // Walk the kept positions; for each, scan dimension d.
    Tensor first = x.raw_slice(d, 0, 1);
    const T* px = x.data<T>();
    T* po = out.data<T>();
    int64_t* pa = arg.data<int64_t>();
    const int64_t n = x.size(d), sd = x.stride(d);
    Shape ostrides = contiguous_strides(p.keep_shape);
    for_each_strided2(first.shape(), first.strides(), ostrides, [&](int64_t ix, int64_t io) {
      const T* row = px + ix;  // first starts where x does
      T best = row[0];
      int64_t at = 0;
      for (int64_t j = 1; j < n; ++j) {
        T v = row[j * sd];
        if (v > best || (v != v && best == best)) { best = v; at = j; }  // NaN propagates
      }
      po[io] = best;
      pa[io] = at;
    });
  });
  Tensor result = out.raw_reshape(p.out_shape);
  // grad goes to the (first) arg-max position of each row
  autograd::record("max", result, {x}, [in = x.shape(), keep = p.keep_shape, arg, d](const Tensor& g) {
    Tensor gx = Tensor::zeros(in, g.dtype());
    Tensor gk = g.raw_reshape(keep).raw_contiguous();
    dispatch_float(g.dtype(), "max_backward", [&](auto tag) {
      using T = decltype(tag);
      T* pgx = gx.data<T>();
      const T* pg = gk.data<T>();
      const int64_t* pa = arg.data<int64_t>();
      Tensor first = gx.raw_slice(d, 0, 1);
      for_each_strided2(first.shape(), first.strides(), contiguous_strides(keep),
                        [&](int64_t ix, int64_t io) { pgx[ix + pa[io] * gx.stride(d)] = pg[io]; });
    });
    return std::vector<Tensor>{gx};
  });
  return result;
}

}  // namespace heed
