// Naive double-precision references (see ops_ref.h). Written for obviousness, not speed.
#include "heed/kernels/ref/ops_ref.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "heed/tensor/random.h"

namespace heed::ref {

namespace {

int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape unravel(int64_t flat, const Shape& shape) {
  Shape idx(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return idx;
}

int64_t ravel(const Shape& idx, const Shape& shape) {
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + idx[d];
  return flat;
}

int64_t wrap(int64_t d, int64_t rank) { return d < 0 ? d + rank : d; }

Shape broadcast(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i + a.size() >= n ? a[i + a.size() - n] : 1;
    int64_t db = i + b.size() >= n ? b[i + b.size() - n] : 1;
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Index into a tensor of shape `in` that an index of broadcast shape `out` reads.
int64_t broadcast_source(const Shape& out_idx, const Shape& in) {
  const size_t lead = out_idx.size() - in.size();
  Shape idx(in.size());
  for (size_t i = 0; i < in.size(); ++i) idx[i] = in[i] == 1 ? 0 : out_idx[i + lead];
  return ravel(idx, in);
}

Tensor generate(const Shape& shape, uint64_t seed, DType dtype, double lo, double hi) {
  return lo < hi ? Tensor::uniform(shape, lo, hi, seed, dtype) : Tensor::randn(shape, seed, dtype);
}

// Rows along `dim`: calls f(list of flat indices of one row) for every row.
template <class F>
void for_each_row(const Shape& shape, int64_t dim, F f) {
  Shape outer = shape;
  outer[dim] = 1;
  const int64_t rows = numel_of(outer), n = shape[dim];
  std::vector<int64_t> row(n);
  for (int64_t r = 0; r < rows; ++r) {
    Shape idx = unravel(r, outer);
    for (int64_t j = 0; j < n; ++j) {
      idx[dim] = j;
      row[j] = ravel(idx, shape);
    }
    f(row);
  }
}

}  // namespace

const char* layout_name(Layout layout) {
  switch (layout) {
    case Layout::kContiguous: return "contiguous";
    case Layout::kTransposed: return "transposed";
    case Layout::kStrided: return "strided";
    case Layout::kExpanded: return "expanded";
  }
  return "?";
}

Tensor make_input(const Shape& shape, Layout layout, uint64_t seed, DType dtype, double lo, double hi) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  if (layout == Layout::kTransposed && rank < 2) layout = Layout::kStrided;
  if (layout == Layout::kExpanded) {
    auto it = std::find_if(shape.begin(), shape.end(), [](int64_t d) { return d > 1; });
    if (it == shape.end()) {
      layout = Layout::kStrided;
    } else {
      Shape base = shape;
      base[it - shape.begin()] = 1;
      return generate(base, seed, dtype, lo, hi).raw_expand(shape);
    }
  }
  if (layout == Layout::kStrided && rank == 0) layout = Layout::kContiguous;
  switch (layout) {
    case Layout::kContiguous: return generate(shape, seed, dtype, lo, hi);
    case Layout::kTransposed: {
      Shape base = shape;
      std::swap(base[rank - 1], base[rank - 2]);
      return generate(base, seed, dtype, lo, hi).raw_transpose(-1, -2);
    }
    default: {  // kStrided
      Shape base = shape;
      const int64_t n = shape[rank - 1];
      base[rank - 1] = 2 * n + 1;
      return generate(base, seed, dtype, lo, hi).raw_slice(-1, 1, 2 * n + 1, 2);
    }
  }
}

std::vector<double> values(const Tensor& t) {
  const int64_t n = t.numel();
  std::vector<double> out(n);
  dispatch_all(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* base = static_cast<const T*>(t.storage()->data());
    Shape idx(t.dim(), 0);  // odometer over the logical index
    for (int64_t k = 0; k < n; ++k) {
      int64_t off = t.offset();
      for (int64_t d = 0; d < t.dim(); ++d) off += idx[d] * t.strides()[d];
      if constexpr (std::is_same_v<T, bf16>) out[k] = static_cast<float>(base[off]);
      else out[k] = static_cast<double>(base[off]);
      for (int64_t d = t.dim() - 1; d >= 0 && ++idx[d] == t.shape()[d]; --d) idx[d] = 0;
    }
  });
  return out;
}

Tensor make(const std::vector<double>& v, const Shape& shape) { return Tensor::from_vector(v, shape); }

// ---------------------------------------------------------------- elementwise

Tensor unary(const Tensor& x, const std::function<double(double)>& f) {
  std::vector<double> v = values(x);
  for (double& e : v) e = f(e);
  return make(v, x.shape());
}

Tensor binary(const Tensor& a, const Tensor& b, const std::function<double(double, double)>& f) {
  const Shape shape = broadcast(a.shape(), b.shape());
  std::vector<double> va = values(a), vb = values(b), out(numel_of(shape));
  for (int64_t k = 0; k < static_cast<int64_t>(out.size()); ++k) {
    Shape idx = unravel(k, shape);
    out[k] = f(va[broadcast_source(idx, a.shape())], vb[broadcast_source(idx, b.shape())]);
  }
  return make(out, shape);
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  const Shape shape = broadcast(broadcast(cond.shape(), a.shape()), b.shape());
  std::vector<double> vc = values(cond), va = values(a), vb = values(b), out(numel_of(shape));
  for (int64_t k = 0; k < static_cast<int64_t>(out.size()); ++k) {
    Shape idx = unravel(k, shape);
    out[k] = vc[broadcast_source(idx, cond.shape())] != 0 ? va[broadcast_source(idx, a.shape())]
                                                          : vb[broadcast_source(idx, b.shape())];
  }
  return make(out, shape);
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  return where(mask, make({value}, {}), x);
}

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }
double gelu(double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); }

// ---------------------------------------------------------------- shape

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  const int64_t rank = x.dim();
  Shape shape(rank);
  for (int64_t i = 0; i < rank; ++i) shape[i] = x.shape()[wrap(dims[i], rank)];
  std::vector<double> vx = values(x), out(numel_of(shape));
  for (int64_t k = 0; k < static_cast<int64_t>(out.size()); ++k) {
    Shape o = unravel(k, shape), in(rank);
    for (int64_t i = 0; i < rank; ++i) in[wrap(dims[i], rank)] = o[i];
    out[k] = vx[ravel(in, x.shape())];
  }
  return make(out, shape);
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  const int64_t d = wrap(dim, x.dim()), n = x.shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape shape = x.shape();
  shape[d] = 0;
  for (int64_t i = start; i < end; i += step) ++shape[d];
  std::vector<double> vx = values(x), out(numel_of(shape));
  for (int64_t k = 0; k < static_cast<int64_t>(out.size()); ++k) {
    Shape idx = unravel(k, shape);
    idx[d] = start + idx[d] * step;
    out[k] = vx[ravel(idx, x.shape())];
  }
  return make(out, shape);
}

Tensor expand(const Tensor& x, const Shape& shape) {
  std::vector<double> vx = values(x), out(numel_of(shape));
  for (int64_t k = 0; k < static_cast<int64_t>(out.size()); ++k) out[k] = vx[broadcast_source(unravel(k, shape), x.shape())];
  return make(out, shape);
}

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  const int64_t d = wrap(dim, xs[0].dim());
  Shape shape = xs[0].shape();
  shape[d] = 0;
  for (const Tensor& t : xs) shape[d] += t.shape()[d];
  std::vector<std::vector<double>> vs;
  for (const Tensor& t : xs) vs.push_back(values(t));
  std::vector<double> out(numel_of(shape));
  for (int64_t k = 0; k < static_cast<int64_t>(out.size()); ++k) {
    Shape idx = unravel(k, shape);
    size_t part = 0;
    while (idx[d] >= xs[part].shape()[d]) idx[d] -= xs[part++].shape()[d];
    out[k] = vs[part][ravel(idx, xs[part].shape())];
  }
  return make(out, shape);
}

Tensor index_select(const Tensor& x, int64_t dim, const std::vector<int64_t>& index) {
  const int64_t d = wrap(dim, x.dim());
  Shape shape = x.shape();
  shape[d] = static_cast<int64_t>(index.size());
  std::vector<double> vx = values(x), out(numel_of(shape));
  for (int64_t k = 0; k < static_cast<int64_t>(out.size()); ++k) {
    Shape idx = unravel(k, shape);
    idx[d] = index[idx[d]];
    out[k] = vx[ravel(idx, x.shape())];
  }
  return make(out, shape);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  std::vector<double> vx = values(x), out(numel_of(shape), 0.0);
  for (int64_t k = 0; k < static_cast<int64_t>(vx.size()); ++k)
    out[broadcast_source(unravel(k, x.shape()), shape)] += vx[k];
  return make(out, shape);
}

// ---------------------------------------------------------------- reductions

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const int64_t rank = x.dim();
  std::vector<bool> reduced(rank, dims.empty());
  for (int64_t d : dims) reduced[wrap(d, rank)] = true;
  Shape keep = x.shape(), out_shape;
  for (int64_t i = 0; i < rank; ++i) {
    if (reduced[i]) keep[i] = 1;
    if (!reduced[i] || keepdim) out_shape.push_back(keep[i]);
  }
  std::vector<double> vx = values(x), out(numel_of(keep), 0.0);
  for (int64_t k = 0; k < static_cast<int64_t>(vx.size()); ++k) {
    Shape idx = unravel(k, x.shape());
    for (int64_t i = 0; i < rank; ++i)
      if (reduced[i]) idx[i] = 0;
    out[ravel(idx, keep)] += vx[k];
  }
  return make(out, out_shape);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor s = sum(x, dims, keepdim);
  const double count = static_cast<double>(x.numel()) / static_cast<double>(std::max<int64_t>(s.numel(), 1));
  return unary(s, [count](double v) { return v / count; });
}

Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  const int64_t d = wrap(dim, x.dim());
  std::vector<double> vx = values(x), out;
  for_each_row(x.shape(), d, [&](const std::vector<int64_t>& row) {
    double best = -std::numeric_limits<double>::infinity();
    for (int64_t i : row) best = std::max(best, vx[i]);
    out.push_back(best);
  });
  Shape shape = x.shape();
  if (keepdim) shape[d] = 1;
  else shape.erase(shape.begin() + d);
  return make(out, shape);
}

// ---------------------------------------------------------------- products

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in.dim() == 1 ? a_in.raw_unsqueeze(0) : a_in;
  Tensor b = b_in.dim() == 1 ? b_in.raw_unsqueeze(1) : b_in;
  const int64_t m = a.shape()[a.dim() - 2], k = a.shape()[a.dim() - 1], n = b.shape()[b.dim() - 1];
  const Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = broadcast(ba, bb);
  std::vector<double> va = values(a), vb = values(b);
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  std::vector<double> out(numel_of(out_shape), 0.0);
  for (int64_t bi = 0; bi < numel_of(batch); ++bi) {
    Shape idx = unravel(bi, batch);
    const int64_t ia = broadcast_source(idx, ba), ib = broadcast_source(idx, bb);
    for (int64_t i = 0; i < m; ++i) {
      double* row = out.data() + (bi * m + i) * n;  // out[i, :] = sum_p a[i, p] * b[p, :]
      for (int64_t p = 0; p < k; ++p) {
        const double aip = va[(ia * m + i) * k + p];
        for (int64_t j = 0; j < n; ++j) row[j] += aip * vb[(ib * k + p) * n + j];
      }
    }
  }
  Shape final_shape = batch;
  if (a_in.dim() > 1) final_shape.push_back(m);
  if (b_in.dim() > 1) final_shape.push_back(n);
  return make(out, final_shape);
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  Tensor y = matmul(x, permute(weight, {1, 0}));
  return bias.defined() ? binary(y, bias, [](double u, double v) { return u + v; }) : y;
}

// ---------------------------------------------------------------- softmax and friends

Tensor softmax(const Tensor& x, int64_t dim, bool log) {
  const int64_t d = wrap(dim, x.dim());
  std::vector<double> vx = values(x), out(vx.size());
  for_each_row(x.shape(), d, [&](const std::vector<int64_t>& row) {
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t i : row) m = std::max(m, vx[i]);
    if (m == -std::numeric_limits<double>::infinity()) {
      for (int64_t i : row) out[i] = log ? m : 0.0;
      return;
    }
    double s = 0;
    for (int64_t i : row) s += std::exp(vx[i] - m);
    for (int64_t i : row) out[i] = log ? vx[i] - m - std::log(s) : std::exp(vx[i] - m) / s;
  });
  return make(out, x.shape());
}

Tensor softmax_grad(const Tensor& x, const Tensor& g, int64_t dim, bool log) {
  const int64_t d = wrap(dim, x.dim());
  std::vector<double> y = values(softmax(x, d, false)), vg = values(g), vx = values(x), out(y.size());
  for_each_row(x.shape(), d, [&](const std::vector<int64_t>& row) {
    bool masked = true;
    for (int64_t i : row) masked = masked && vx[i] == -std::numeric_limits<double>::infinity();
    // Jacobian of softmax: dy_j/dx_i = y_j (delta_ij - y_i); of log_softmax: delta_ij - y_i.
    for (int64_t i : row) {
      double acc = 0;
      for (int64_t j : row) {
        double jac = log ? (i == j) - y[i] : y[j] * ((i == j) - y[i]);
        acc += vg[j] * jac;
      }
      out[i] = masked ? 0.0 : acc;
    }
  });
  return make(out, x.shape());
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  const int64_t d = x.dim() - 1;
  std::vector<double> vx = values(x), out(vx.size());
  std::vector<double> w = weight.defined() ? values(weight) : std::vector<double>(x.shape()[d], 1.0);
  std::vector<double> b = bias.defined() ? values(bias) : std::vector<double>(x.shape()[d], 0.0);
  for_each_row(x.shape(), d, [&](const std::vector<int64_t>& row) {
    const double n = static_cast<double>(row.size());
    double mu = 0, var = 0;
    for (int64_t i : row) mu += vx[i];
    mu /= n;
    for (int64_t i : row) var += (vx[i] - mu) * (vx[i] - mu);
    var /= n;
    for (size_t c = 0; c < row.size(); ++c) out[row[c]] = (vx[row[c]] - mu) / std::sqrt(var + eps) * w[c] + b[c];
  });
  return make(out, x.shape());
}

LayerNormGrads layer_norm_grad(const Tensor& x, const Tensor& weight, const Tensor& g, double eps) {
  const int64_t d = x.dim() - 1, c = x.shape()[d];
  std::vector<double> vx = values(x), vg = values(g), gx(vx.size()), gw(c, 0.0), gb(c, 0.0);
  std::vector<double> w = weight.defined() ? values(weight) : std::vector<double>(c, 1.0);
  for_each_row(x.shape(), d, [&](const std::vector<int64_t>& row) {
    const double n = static_cast<double>(c);
    double mu = 0, var = 0;
    for (int64_t i : row) mu += vx[i];
    mu /= n;
    for (int64_t i : row) var += (vx[i] - mu) * (vx[i] - mu);
    var /= n;
    const double rs = 1 / std::sqrt(var + eps);
    std::vector<double> xhat(c);
    for (int64_t j = 0; j < c; ++j) xhat[j] = (vx[row[j]] - mu) * rs;
    // Full Jacobian: dy_j/dx_i = w_j rstd (delta_ij - 1/C - xhat_i xhat_j / C).
    for (int64_t i = 0; i < c; ++i) {
      double acc = 0;
      for (int64_t j = 0; j < c; ++j) acc += vg[row[j]] * w[j] * rs * ((i == j) - 1 / n - xhat[i] * xhat[j] / n);
      gx[row[i]] = acc;
      gw[i] += vg[row[i]] * xhat[i];
      gb[i] += vg[row[i]];
    }
  });
  return {make(gx, x.shape()), make(gw, {c}), make(gb, {c})};
}

Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t stream) {
  std::vector<double> vx = values(x);
  for (size_t i = 0; i < vx.size(); ++i)
    vx[i] = random::dropout_keep(seed, stream, i, static_cast<float>(p)) ? vx[i] / (1 - p) : 0.0;
  return make(vx, x.shape());
}

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  const int64_t c = weight.shape()[1];
  std::vector<double> vw = values(weight), vi = values(indices), out;
  for (double i : vi)
    for (int64_t j = 0; j < c; ++j) out.push_back(vw[static_cast<int64_t>(i) * c + j]);
  Shape shape = indices.shape();
  shape.push_back(c);
  return make(out, shape);
}

Tensor embedding_grad(const Tensor& indices, const Tensor& g, int64_t v, int64_t padding_idx) {
  const int64_t c = g.shape()[g.dim() - 1];
  std::vector<double> vi = values(indices), vg = values(g), out(v * c, 0.0);
  for (size_t k = 0; k < vi.size(); ++k) {
    const int64_t i = static_cast<int64_t>(vi[k]);
    if (i == padding_idx) continue;
    for (int64_t j = 0; j < c; ++j) out[i * c + j] += vg[k * c + j];
  }
  return make(out, {v, c});
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, double label_smoothing, int64_t ignore_index) {
  const int64_t v = logits.shape()[logits.dim() - 1];
  std::vector<double> vx = values(logits), vt = values(targets), out(vt.size());
  for (size_t r = 0; r < vt.size(); ++r) {
    const int64_t t = static_cast<int64_t>(vt[r]);
    if (t == ignore_index) continue;
    const double* x = vx.data() + r * v;
    double m = *std::max_element(x, x + v), s = 0;
    for (int64_t c = 0; c < v; ++c) s += std::exp(x[c] - m);
    const double lse = m + std::log(s);
    double smooth = 0;  // mean over classes of -log p_c
    for (int64_t c = 0; c < v; ++c) smooth += (lse - x[c]) / v;
    out[r] = (1 - label_smoothing) * (lse - x[t]) + (label_smoothing > 0 ? label_smoothing * smooth : 0.0);
  }
  return make(out, targets.shape());
}

Tensor cross_entropy_grad(const Tensor& logits, const Tensor& targets, double label_smoothing,
                          int64_t ignore_index, const std::vector<double>& scale) {
  const int64_t v = logits.shape()[logits.dim() - 1];
  std::vector<double> vx = values(logits), vt = values(targets), out(vx.size(), 0.0);
  for (size_t r = 0; r < vt.size(); ++r) {
    const int64_t t = static_cast<int64_t>(vt[r]);
    if (t == ignore_index) continue;
    const double* x = vx.data() + r * v;
    double m = *std::max_element(x, x + v), s = 0;
    for (int64_t c = 0; c < v; ++c) s += std::exp(x[c] - m);
    for (int64_t c = 0; c < v; ++c) {
      const double target = (1 - label_smoothing) * (c == t) + label_smoothing / v;
      out[r * v + c] = scale[r] * (std::exp(x[c] - m) / s - target);
    }
  }
  return make(out, logits.shape());
}

}  // namespace heed::ref
