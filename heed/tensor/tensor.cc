// Tensor storage, factories, raw views and strided copies.
#include "heed/tensor/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "heed/tensor/allocator.h"
#include "heed/tensor/random.h"
#include "heed/tensor/strided.h"

namespace heed {

std::string shape_str(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string position_str(std::span<const int64_t> shape, int64_t flat) {
  Shape idx(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  return shape_str(idx);
}

int64_t shape_numel(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Shape contiguous_strides(std::span<const int64_t> shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    strides[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

int64_t wrap_dim(int64_t d, int64_t rank, const char* op) {
  int64_t r = std::max<int64_t>(rank, 1);
  HEED_CHECK(d >= -r && d < r, op, ": dimension ", d, " out of range for a tensor of rank ", rank,
             " (expected in [", -r, ", ", r - 1, "])");
  return d < 0 ? d + r : d;
}

int64_t wrap_dim(int64_t d, std::span<const int64_t> shape, const char* op) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  const int64_t r = std::max<int64_t>(rank, 1);
  HEED_CHECK(d >= -r && d < r, op, ": dimension ", d, " out of range for shape ", shape_str(shape),
             " (expected in [", -r, ", ", r - 1, "])");
  return d < 0 ? d + r : d;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    HEED_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
               " do not broadcast (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// ---------------------------------------------------------------- storage

Storage::Storage(size_t bytes) : data_(memory::allocate(bytes)), bytes_(bytes) {}

Storage::~Storage() { memory::release(data_, bytes_); }

// ---------------------------------------------------------------- factories

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  for (int64_t d : shape)
    HEED_CHECK(d >= 0, "tensor: negative dimension in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw_data(), 0, t.numel() * dtype_size(dtype));
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill_(value);
  return t;
}

Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, dtype); }

Tensor Tensor::arange(int64_t n, DType dtype) {
  Tensor t = empty({n}, dtype);
  dispatch_all(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(static_cast<float>(i));
  });
  return t;
}

Tensor Tensor::randn(const Shape& shape, uint64_t seed, DType dtype) {
  Tensor t = empty(shape, dtype);
  dispatch_float(dtype, "randn", [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(random::normal(seed, 0, i));
  });
  return t;
}

Tensor Tensor::uniform(const Shape& shape, double lo, double hi, uint64_t seed, DType dtype) {
  Tensor t = empty(shape, dtype);
  dispatch_float(dtype, "uniform", [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i)
      p[i] = static_cast<T>(lo + (hi - lo) * random::uniform(seed, 1, i));
  });
  return t;
}

// ---------------------------------------------------------------- properties

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, shape(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, shape(), "stride")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype())) + shape_str(shape());
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl().storage->data()) + offset() * dtype_size(dtype());
}

double Tensor::item() const {
  HEED_CHECK(numel() == 1, "item: expected a one-element tensor, got ", str());
  return dispatch_all(dtype(), [&](auto tag) {
    using T = decltype(tag);
    T v = *static_cast<const T*>(raw_data());
    if constexpr (std::is_same_v<T, bf16>) return static_cast<double>(static_cast<float>(v));
    else return static_cast<double>(v);
  });
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = to(dtype_of<T>()).raw_contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

// ---------------------------------------------------------------- raw views

Tensor Tensor::view_as_strided(const Shape& shape, const Shape& strides, int64_t offset) const {
  HEED_CHECK(shape.size() == strides.size(), "as_strided: shape ", shape_str(shape), " and strides ",
             shape_str(strides), " differ in rank");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype();
  return Tensor(std::move(impl));
}

Tensor Tensor::raw_reshape(const Shape& shape_in) const {
  Shape shape = shape_in;
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      HEED_CHECK(infer < 0, "reshape: more than one -1 in ", shape_str(shape_in));
      infer = static_cast<int64_t>(i);
    } else {
      HEED_CHECK(shape[i] >= 0, "reshape: negative dimension in ", shape_str(shape_in), " for ", str());
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    HEED_CHECK(known > 0 && numel() % known == 0, "reshape: cannot reshape ", str(), " to ",
               shape_str(shape_in));
    shape[infer] = numel() / known;
  }
  HEED_CHECK(shape_numel(shape) == numel(), "reshape: cannot reshape ", str(), " (", numel(),
             " elements) to ", shape_str(shape_in), " (", shape_numel(shape), " elements)");
  if (is_contiguous()) return view_as_strided(shape, contiguous_strides(shape), offset());
  return raw_contiguous().view_as_strided(shape, contiguous_strides(shape), 0);
}

Tensor Tensor::raw_permute(const std::vector<int64_t>& dims) const {
  HEED_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: ", dims.size(),
             " dimensions given for ", str(), " (expected ", dim(), ")");
  Shape shape(dims.size()), strides(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], this->shape(), "permute");
    HEED_CHECK(!seen[d], "permute: dimension ", d, " repeated in ", shape_str(dims), " for ", str());
    seen[d] = true;
    shape[i] = this->shape()[d];
    strides[i] = this->strides()[d];
  }
  return view_as_strided(shape, strides, offset());
}

Tensor Tensor::raw_transpose(int64_t d0, int64_t d1) const {
  d0 = wrap_dim(d0, shape(), "transpose");
  d1 = wrap_dim(d1, shape(), "transpose");
  std::vector<int64_t> dims(dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[d0], dims[d1]);
  return raw_permute(dims);
}

Tensor Tensor::raw_slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, shape(), "slice");
  int64_t n = shape()[d];
  HEED_CHECK(step >= 1, "slice: step must be >= 1, got ", step, " for ", str());
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape shape = this->shape(), strides = this->strides();
  shape[d] = (end - start + step - 1) / step;
  strides[d] *= step;
  return view_as_strided(shape, strides, offset() + start * this->strides()[d]);
}

Tensor Tensor::raw_expand(const Shape& shape) const {
  HEED_CHECK(shape.size() >= static_cast<size_t>(dim()), "expand: cannot expand ", str(), " to ",
             shape_str(shape), " (fewer dimensions)");
  for (int64_t d : shape)
    HEED_CHECK(d >= 0, "expand: negative dimension in ", shape_str(shape), " for ", str());
  size_t lead = shape.size() - dim();
  Shape strides(shape.size(), 0);
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) continue;
    int64_t have = this->shape()[i - lead];
    if (have == shape[i]) {
      strides[i] = this->strides()[i - lead];
    } else {
      HEED_CHECK(have == 1, "expand: cannot expand ", str(), " to ", shape_str(shape),
                 " (dimension ", i, " is ", have, ", expected 1 or ", shape[i], ")");
    }
  }
  return view_as_strided(shape, strides, offset());
}

Tensor Tensor::raw_unsqueeze(int64_t d) const {
  HEED_CHECK(d >= -(dim() + 1) && d <= dim(), "unsqueeze: dimension ", d, " out of range for ", str(),
             " (expected in [", -(dim() + 1), ", ", dim(), "])");
  if (d < 0) d += dim() + 1;
  Shape shape = this->shape(), strides = this->strides();
  int64_t st = d < dim() ? strides[d] * shape[d] : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, st);
  return view_as_strided(shape, strides, offset());
}

Tensor Tensor::raw_squeeze(int64_t d) const {
  d = wrap_dim(d, shape(), "squeeze");
  HEED_CHECK(shape()[d] == 1, "squeeze: dimension ", d, " of ", str(), " has size ", shape()[d],
             ", expected 1");
  Shape shape = this->shape(), strides = this->strides();
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return view_as_strided(shape, strides, offset());
}

Tensor Tensor::raw_contiguous() const { return is_contiguous() ? *this : clone_data(); }

Tensor Tensor::clone_data() const {
  Tensor out = empty(shape(), dtype());
  out.copy_from(*this);
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), target);
  out.copy_from(*this);
  return out;
}

namespace {
template <class D, class S>
inline D convert(S v) {
  if constexpr (std::is_same_v<D, bf16>) return bf16(static_cast<float>(v));
  else if constexpr (std::is_same_v<S, bf16>) return static_cast<D>(static_cast<float>(v));
  else return static_cast<D>(v);
}
}  // namespace

void Tensor::copy_from(const Tensor& src_in) {
  Tensor src = src_in.shape() == shape() ? src_in : src_in.raw_expand(shape());
  if (src.dtype() == dtype() && is_contiguous() && src.is_contiguous()) {  // same layout: copy the bytes
    std::memmove(raw_data(), src.raw_data(), numel() * dtype_size(dtype()));
    return;
  }
  dispatch_all(dtype(), [&](auto dtag) {
    using D = decltype(dtag);
    dispatch_all(src.dtype(), [&](auto stag) {
      using S = decltype(stag);
      D* dst = data<D>();
      const S* s = src.data<S>();
      for_each_strided2(shape(), strides(), src.strides(),
                        [&](int64_t od, int64_t os) { dst[od] = convert<D>(s[os]); });
    });
  });
}

void Tensor::fill_(double value) {
  dispatch_all(dtype(), [&](auto tag) {
    using T = decltype(tag);
    T v = convert<T>(value);
    T* p = data<T>();
    if (is_contiguous()) {
      std::fill(p, p + numel(), v);
    } else {
      for_each_strided2(shape(), strides(), strides(), [&](int64_t o, int64_t) { p[o] = v; });
    }
  });
}

}  // namespace heed
