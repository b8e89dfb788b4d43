// CPU elementwise maps over strided, broadcast operands. Functors are inlined into
// the loop (no per-element virtual call); contiguous operands take a flat loop.
#pragma once

#include <cstdint>

#include "heed/tensor/strided.h"
#include "heed/tensor/tensor.h"

namespace heed::kernels::cpu {

// Element count above which a flat loop is split across OpenMP threads.
inline constexpr int64_t kParallelGrain = 1 << 15;

// out[i] = f(x[i]); out is a fresh contiguous tensor of x's shape.
template <class T, class F>
void map_unary(const Tensor& x, const Tensor& out, F f) {
  const T* px = x.data<T>();
  T* po = out.data<T>();
  const int64_t n = out.numel();
  if (x.is_contiguous()) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) po[i] = f(px[i]);
    return;
  }
  for_each_strided2(out.shape(), out.strides(), x.strides(),
                    [&](int64_t io, int64_t ix) { po[io] = f(px[ix]); });
}

// out[i] = f(a[i], b[i]); a and b are views already expanded to out's shape.
template <class T, class F>
void map_binary(const Tensor& a, const Tensor& b, const Tensor& out, F f) {
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* po = out.data<T>();
  const int64_t n = out.numel();
  if (a.is_contiguous() && b.is_contiguous()) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    return;
  }
  for_each_strided3(out.shape(), out.strides(), a.strides(), b.strides(),
                    [&](int64_t io, int64_t ia, int64_t ib) { po[io] = f(pa[ia], pb[ib]); });
}

// out[i] = f(a[i], b[i], c[i]); all expanded to out's shape.
template <class T, class F>
void map_ternary(const Tensor& a, const Tensor& b, const Tensor& c, const Tensor& out, F f) {
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  const T* pc = c.data<T>();
  T* po = out.data<T>();
  for_each_strided<4>(out.shape(), {out.strides().data(), a.strides().data(), b.strides().data(),
                                    c.strides().data()},
                      [&](int64_t io, int64_t ia, int64_t ib, int64_t ic) { po[io] = f(pa[ia], pb[ib], pc[ic]); });
}

}  // namespace heed::kernels::cpu
