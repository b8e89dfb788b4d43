// Portable CPU softmax kernels: max-subtracted exponentials with double accumulation.
#include "heed/kernels/cpu/softmax_cpu.h"

#include <cmath>
#include <limits>
#include <type_traits>

#include "heed/kernels/cpu/elementwise.h"
#include "heed/kernels/cpu/softmax_avx512.h"
#include "heed/tensor/strided.h"

namespace heed::kernels::cpu {

bool has_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  return yes;
}

RowIndex row_index(std::span<const int64_t> shape, std::span<const int64_t> strides, int64_t dim) {
  RowIndex r;
  r.stride = strides[dim];
  std::vector<int64_t> outer(shape.begin(), shape.end());
  outer[dim] = 1;
  int64_t rows = 1;
  for (int64_t d : outer) rows *= d;
  r.starts.reserve(rows);
  for_each_strided<1>(outer, {strides.data()}, [&](int64_t o) { r.starts.push_back(o); });
  return r;
}

namespace {

// One row; sx/sy are literal 1 in the contiguous instantiation, so that loop vectorises.
template <class T>
inline void forward_row(const T* x, int64_t sx, T* y, int64_t sy, int64_t n, bool log) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  T m = kNegInf;
  for (int64_t i = 0; i < n; ++i) m = x[i * sx] > m ? x[i * sx] : m;
  if (m == kNegInf) {  // every key masked: a zero row, never NaN
    for (int64_t i = 0; i < n; ++i) y[i * sy] = log ? kNegInf : T(0);
    return;
  }
  double s = 0;
  if (log) {
    for (int64_t i = 0; i < n; ++i) s += std::exp(x[i * sx] - m);
    // (x - m) is exact in floating point; subtracting a rounded m + log(s) would not be.
    const T log_s = static_cast<T>(std::log(s));
    for (int64_t i = 0; i < n; ++i) y[i * sy] = (x[i * sx] - m) - log_s;
  } else {
    for (int64_t i = 0; i < n; ++i) {
      T e = std::exp(x[i * sx] - m);
      y[i * sy] = e;
      s += e;
    }
    const T inv = static_cast<T>(1.0 / s);
    for (int64_t i = 0; i < n; ++i) y[i * sy] *= inv;
  }
}

template <class T>
inline void backward_row(const T* y, int64_t sy, const T* g, int64_t sg, T* gx, int64_t sgx, int64_t n,
                         bool log) {
  if (log) {
    // log_softmax: g_x = g - softmax * sum(g); an all -inf row had no dependence on x.
    bool all_masked = true;
    double sg_sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      sg_sum += g[i * sg];
      all_masked = all_masked && y[i * sy] == -std::numeric_limits<T>::infinity();
    }
    if (all_masked) {
      for (int64_t i = 0; i < n; ++i) gx[i * sgx] = T(0);
      return;
    }
    const T s = static_cast<T>(sg_sum);
    for (int64_t i = 0; i < n; ++i) gx[i * sgx] = g[i * sg] - std::exp(y[i * sy]) * s;
  } else {
    // softmax: g_x = y * (g - <g, y>)
    double dot = 0;
    for (int64_t i = 0; i < n; ++i) dot += static_cast<double>(g[i * sg]) * y[i * sy];
    const T d = static_cast<T>(dot);
    for (int64_t i = 0; i < n; ++i) gx[i * sgx] = y[i * sy] * (g[i * sg] - d);
  }
}

template <class T>
void forward_rows(const SoftmaxParams& p, const T* x, const RowIndex& xi, T* y, const RowIndex& yi) {
  const int64_t rows = static_cast<int64_t>(xi.starts.size());
  const bool contiguous = xi.stride == 1 && yi.stride == 1;
  if constexpr (std::is_same_v<T, float>) {
    if (contiguous && has_avx512()) {
#pragma omp parallel for schedule(static) if (rows * p.n > kParallelGrain)
      for (int64_t r = 0; r < rows; ++r) avx512::softmax_row(x + xi.starts[r], y + yi.starts[r], p.n, p.log);
      return;
    }
  }
#pragma omp parallel for schedule(static) if (rows * p.n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    if (contiguous) forward_row(x + xi.starts[r], 1, y + yi.starts[r], 1, p.n, p.log);
    else forward_row(x + xi.starts[r], xi.stride, y + yi.starts[r], yi.stride, p.n, p.log);
  }
}

template <class T>
void backward_rows(const SoftmaxParams& p, const T* y, const RowIndex& yi, const T* g, const RowIndex& gi, T* gx,
                   const RowIndex& gxi) {
  const int64_t rows = static_cast<int64_t>(yi.starts.size());
  const bool contiguous = yi.stride == 1 && gi.stride == 1 && gxi.stride == 1;
  if constexpr (std::is_same_v<T, float>) {
    if (contiguous && has_avx512()) {
#pragma omp parallel for schedule(static) if (rows * p.n > kParallelGrain)
      for (int64_t r = 0; r < rows; ++r)
        avx512::softmax_backward_row(y + yi.starts[r], g + gi.starts[r], gx + gxi.starts[r], p.n, p.log);
      return;
    }
  }
#pragma omp parallel for schedule(static) if (rows * p.n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    if (contiguous) backward_row(y + yi.starts[r], 1, g + gi.starts[r], 1, gx + gxi.starts[r], 1, p.n, p.log);
    else
      backward_row(y + yi.starts[r], yi.stride, g + gi.starts[r], gi.stride, gx + gxi.starts[r], gxi.stride, p.n,
                   p.log);
  }
}

}  // namespace

void softmax_forward(const SoftmaxParams& p, const float* x, const RowIndex& xi, float* y, const RowIndex& yi) {
  forward_rows(p, x, xi, y, yi);
}
void softmax_forward(const SoftmaxParams& p, const double* x, const RowIndex& xi, double* y, const RowIndex& yi) {
  forward_rows(p, x, xi, y, yi);
}
void softmax_backward(const SoftmaxParams& p, const float* y, const RowIndex& yi, const float* g,
                      const RowIndex& gi, float* gx, const RowIndex& gxi) {
  backward_rows(p, y, yi, g, gi, gx, gxi);
}
void softmax_backward(const SoftmaxParams& p, const double* y, const RowIndex& yi, const double* g,
                      const RowIndex& gi, double* gx, const RowIndex& gxi) {
  backward_rows(p, y, yi, g, gi, gx, gxi);
}

}  // namespace heed::kernels::cpu
