// Shape ops. Views record a backward that maps the gradient back through the view;
// concat/split/index_select move data and scatter the gradient back.
#include "heed/ops/shape.h"

#include <algorithm>
#include <numeric>

#include "heed/autograd/graph.h"
#include "heed/ops/reduce.h"
#include "heed/tensor/strided.h"

namespace heed {

Tensor reshape(const Tensor& x, const Shape& shape) {
  Tensor out = x.raw_reshape(shape);  // a view when x's layout allows, else a copy
  autograd::record("reshape", out, {x}, [in = x.shape()](const Tensor& g) {
    return std::vector<Tensor>{reshape(g, in)};
  });
  return out;
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  Tensor out = x.raw_permute(dims);
  autograd::record("permute", out, {x}, [dims, rank = x.dim()](const Tensor& g) {
    std::vector<int64_t> inverse(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) inverse[wrap_dim(dims[i], rank, "permute")] = static_cast<int64_t>(i);
    return std::vector<Tensor>{permute(g, inverse)};
  });
  return out;
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  Tensor out = x.raw_transpose(d0, d1);
  autograd::record("transpose", out, {x}, [d0, d1](const Tensor& g) {
    return std::vector<Tensor>{transpose(g, d0, d1)};
  });
  return out;
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  Tensor out = x.raw_slice(dim, start, end, step);
  const int64_t d = wrap_dim(dim, x.shape(), "slice");
  const int64_t n = x.size(d);
  int64_t s0 = start < 0 ? start + n : start;
  s0 = std::clamp<int64_t>(s0, 0, n);
  // grad_x = zeros with grad_out written into the sliced positions
  autograd::record("slice", out, {x}, [in = x.shape(), d, s0, step, len = out.size(d)](const Tensor& g) {
    Tensor gx = Tensor::zeros(in, g.dtype());
    gx.raw_slice(d, s0, s0 + len * step, step).copy_from(g);
    return std::vector<Tensor>{gx};
  });
  return out;
}

Tensor expand(const Tensor& x, const Shape& shape) {
  Tensor out = x.raw_expand(shape);
  autograd::record("expand", out, {x}, [in = x.shape()](const Tensor& g) {
    return std::vector<Tensor>{sum_to(g, in)};
  });
  return out;
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  Tensor out = x.raw_unsqueeze(dim);
  autograd::record("unsqueeze", out, {x}, [in = x.shape()](const Tensor& g) {
    return std::vector<Tensor>{reshape(g, in)};
  });
  return out;
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  Tensor out = x.raw_squeeze(dim);
  autograd::record("squeeze", out, {x}, [in = x.shape()](const Tensor& g) {
    return std::vector<Tensor>{reshape(g, in)};
  });
  return out;
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  Tensor out = x.clone_data();
  autograd::record("contiguous", out, {x}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  HEED_CHECK(!xs.empty(), "concat: no tensors given");
  const Tensor& first = xs.front();
  const int64_t d = wrap_dim(dim, first.shape(), "concat");
  Shape shape = first.shape();
  shape[d] = 0;
  std::vector<int64_t> sizes;
  for (const Tensor& t : xs) {
    HEED_CHECK(t.dim() == first.dim() && t.dtype() == first.dtype(), "concat: ", t.str(),
               " does not match ", first.str(), " (expected same rank and dtype)");
    for (int64_t i = 0; i < t.dim(); ++i)
      HEED_CHECK(i == d || t.size(i) == first.size(i), "concat: ", t.str(), " and ", first.str(),
                 " differ in dimension ", i, " (only dimension ", d, " may differ)");
    shape[d] += t.size(d);
    sizes.push_back(t.size(d));
  }
  Tensor out = Tensor::empty(shape, first.dtype());
  int64_t at = 0;
  for (const Tensor& t : xs) {
    out.raw_slice(d, at, at + t.size(d)).copy_from(t);
    at += t.size(d);
  }
  autograd::record("concat", out, xs, [sizes, d](const Tensor& g) {
    std::vector<Tensor> grads;
    int64_t at = 0;
    for (int64_t s : sizes) {
      grads.push_back(g.raw_slice(d, at, at + s));
      at += s;
    }
    return grads;
  });
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const int64_t d = wrap_dim(dim, x.shape(), "split");
  int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  HEED_CHECK(total == x.size(d), "split: sizes ", shape_str(sizes), " sum to ", total, ", expected ",
             x.size(d), " (dimension ", d, " of ", x.str(), ")");
  std::vector<Tensor> parts;
  int64_t at = 0;
  for (int64_t s : sizes) {
    HEED_CHECK(s >= 0, "split: negative size in ", shape_str(sizes), " for ", x.str());
    parts.push_back(slice(x, d, at, at + s));
    at += s;
  }
  return parts;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  HEED_CHECK(index.defined() && index.dtype() == DType::kI64 && index.dim() == 1,
             "index_select: index must be a 1-D i64 tensor, got ", index.str());
  const int64_t d = wrap_dim(dim, x.shape(), "index_select");
  const int64_t n = x.size(d);
  std::vector<int64_t> idx = index.to_vector<int64_t>();
  for (int64_t i : idx)
    HEED_CHECK(i >= 0 && i < n, "index_select: index ", i, " out of range for dimension ", d, " of ",
               x.str(), " (expected in [0, ", n, "))");
  Shape shape = x.shape();
  shape[d] = static_cast<int64_t>(idx.size());
  Tensor out = Tensor::empty(shape, x.dtype());
  for (size_t k = 0; k < idx.size(); ++k)
    out.raw_slice(d, k, k + 1).copy_from(x.raw_slice(d, idx[k], idx[k] + 1));
  // grad_x[idx[k]] += grad_out[k] (repeated indices accumulate, in index order)
  autograd::record("index_select", out, {x}, [in = x.shape(), d, idx](const Tensor& g) {
    Tensor gx = Tensor::zeros(in, g.dtype());
    dispatch_float(g.dtype(), "index_select_backward", [&](auto tag) {
      using T = decltype(tag);
      for (size_t k = 0; k < idx.size(); ++k) {
        Tensor dst = gx.raw_slice(d, idx[k], idx[k] + 1);
        Tensor src = g.raw_slice(d, k, k + 1);
        T* pd = dst.data<T>();
        const T* ps = src.data<T>();
        for_each_strided2(dst.shape(), dst.strides(), src.strides(),
                          [&](int64_t od, int64_t os) { pd[od] += ps[os]; });
      }
    });
    return std::vector<Tensor>{gx};
  });
  return out;
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  HEED_CHECK(static_cast<size_t>(x.dim()) >= shape.size(), "sum_to: cannot reduce ", x.str(), " to ",
             shape_str(shape));
  const size_t lead = x.dim() - shape.size();
  std::vector<int64_t> dims;
  for (size_t i = 0; i < static_cast<size_t>(x.dim()); ++i) {
    if (i < lead) dims.push_back(static_cast<int64_t>(i));
    else if (shape[i - lead] == 1 && x.size(i) != 1) dims.push_back(static_cast<int64_t>(i));
    else HEED_CHECK(shape[i - lead] == x.size(i), "sum_to: cannot reduce ", x.str(), " to ", shape_str(shape));
  }
  Tensor r = dims.empty() ? x : sum(x, dims, /*keepdim=*/true);
  return reshape(r, shape);
}

}  // namespace heed
