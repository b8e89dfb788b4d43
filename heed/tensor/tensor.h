// Tensor: a typed, strided view of reference-counted, 64-byte aligned storage.
// Views (reshape, permute, slice, expand) share storage; nothing here knows about
// gradients beyond an opaque slot that the autograd layer fills in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "heed/tensor/dtype.h"
#include "heed/tensor/error.h"

namespace heed {

using Shape = std::vector<int64_t>;

std::string shape_str(std::span<const int64_t> shape);
// The multi-index of row-major flat index `flat` in `shape`, as "[i, j, ...]" (for messages).
std::string position_str(std::span<const int64_t> shape, int64_t flat);
int64_t shape_numel(std::span<const int64_t> shape);
// Strides of a contiguous (row-major) tensor of this shape, in elements.
Shape contiguous_strides(std::span<const int64_t> shape);

// Raw memory, 64-byte aligned, from heed/tensor/allocator.h's cache; given back when the
// last view goes.
class Storage {
 public:
  explicit Storage(size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

namespace autograd {
struct Meta;  // defined in heed/autograd; holds requires_grad, grad and grad_fn.
}

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;       // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::kF32;
  std::shared_ptr<autograd::Meta> autograd;
};

// A handle: copying a Tensor shares the same impl (like torch.Tensor in Python).
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories (no gradient tracking) ----
  static Tensor empty(const Shape& shape, DType dtype = DType::kF32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::kF32);
  static Tensor ones(const Shape& shape, DType dtype = DType::kF32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::kF32);
  static Tensor scalar(double value, DType dtype = DType::kF32);
  static Tensor arange(int64_t n, DType dtype = DType::kI64);
  // Values copied from a vector; dtype follows T (float->f32, double->f64, int64->i64, uint8->u8).
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape);
  // Seeded: the same (seed, shape, dtype) always gives the same values.
  static Tensor randn(const Shape& shape, uint64_t seed, DType dtype = DType::kF32);
  static Tensor uniform(const Shape& shape, double lo, double hi, uint64_t seed,
                        DType dtype = DType::kF32);

  // ---- properties ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape_numel(impl().shape); }
  bool is_contiguous() const;
  bool is_floating() const { return is_floating_dtype(dtype()); }
  std::string str() const;  // "f32[2, 3]"

  // Typed pointer to element 0 of this view; throws if T does not match dtype.
  template <class T>
  T* data() const;
  void* raw_data() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  // Value of a one-element tensor, converted to double.
  double item() const;
  // All values in row-major order, converted to T (for tests and I/O).
  template <class T>
  std::vector<T> to_vector() const;

  // ---- raw views and copies (no gradient tracking; ops/ wraps these for autograd) ----
  Tensor view_as_strided(const Shape& shape, const Shape& strides, int64_t offset) const;
  Tensor raw_reshape(const Shape& shape) const;  // view if possible, else copy
  Tensor raw_permute(const std::vector<int64_t>& dims) const;
  Tensor raw_transpose(int64_t d0, int64_t d1) const;
  Tensor raw_slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor raw_expand(const Shape& shape) const;  // broadcast view (stride 0)
  Tensor raw_unsqueeze(int64_t dim) const;
  Tensor raw_squeeze(int64_t dim) const;
  Tensor raw_contiguous() const;  // this if already contiguous, else a copy
  Tensor clone_data() const;      // always a fresh contiguous copy
  Tensor to(DType dtype) const;   // converted copy (this if same dtype)
  // Copies src (broadcast to this shape, converted to this dtype) into this view.
  void copy_from(const Tensor& src);
  void fill_(double value);

  // ---- autograd slot (filled by heed/autograd) ----
  const std::shared_ptr<autograd::Meta>& autograd_meta() const { return impl().autograd; }
  void set_autograd_meta(std::shared_ptr<autograd::Meta> meta) const { impl().autograd = std::move(meta); }
  bool requires_grad() const;
  // Marks a leaf as a parameter that collects gradients; returns *this.
  Tensor& requires_grad_(bool value = true);
  Tensor grad() const;  // undefined tensor until backward() reaches this leaf
  void zero_grad() const;
  Tensor detach() const;  // same data, no history
  void backward() const;  // reverse pass from a scalar (defined in autograd)

  TensorImpl& impl() const {
    HEED_CHECK(impl_, "tensor: use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Normalises a possibly negative dimension index against rank, naming `op` on error.
int64_t wrap_dim(int64_t d, int64_t rank, const char* op);
// Same, for a dimension of a tensor of `shape`; the error also names the shape.
int64_t wrap_dim(int64_t d, std::span<const int64_t> shape, const char* op);
// Broadcast two shapes NumPy-style; throws naming `op` when they do not broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

template <class T>
T* Tensor::data() const {
  HEED_CHECK(dtype_of<T>() == dtype(), "tensor: data<", dtype_name(dtype_of<T>()),
             ">() on a ", str(), " tensor");
  return static_cast<T*>(raw_data());
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  HEED_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ",
             values.size(), " values for shape ", shape_str(shape), " (expected ",
             shape_numel(shape), ")");
  Tensor t = empty(shape, dtype_of<T>());
  T* p = t.data<T>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return t;
}

}  // namespace heed
