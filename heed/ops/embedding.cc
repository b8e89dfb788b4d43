// embedding: index checks, the row gather, and the backward scatter-add into the table.
#include "heed/ops/embedding.h"

#include <algorithm>
#include <cstring>

#include "heed/autograd/graph.h"
#include "heed/kernels/cpu/elementwise.h"

namespace heed {

Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx) {
  HEED_CHECK(weight.defined() && weight.dim() == 2 && (weight.dtype() == DType::kF32 || weight.dtype() == DType::kF64),
             "embedding: weight must be a f32 or f64 [V, C] table, got ", weight.str());
  HEED_CHECK(indices.defined() && indices.dtype() == DType::kI64, "embedding: indices must be i64, got ",
             indices.str());
  const int64_t v = weight.size(0), c = weight.size(1);
  HEED_CHECK(padding_idx >= -1 && padding_idx < v, "embedding: padding_idx ", padding_idx,
             " out of range for weight ", weight.str(), " (expected -1 or in [0, ", v, "))");
  Tensor idx = indices.raw_contiguous();  // [...]
  const int64_t* pi = idx.data<int64_t>();
  const int64_t count = idx.numel();
  for (int64_t k = 0; k < count; ++k)
    HEED_CHECK(pi[k] >= 0 && pi[k] < v, "embedding: index ", pi[k], " at position ",
               position_str(idx.shape(), k), " of indices ", indices.str(), " out of range for weight ",
               weight.str(), " (expected in [0, ", v, "))");
  Shape out_shape = indices.shape();
  out_shape.push_back(c);
  Tensor w = weight.raw_contiguous().detach();  // [V, C]
  Tensor out = Tensor::empty(out_shape, weight.dtype());  // [..., C]
  const size_t row_bytes = c * dtype_size(weight.dtype());
  const auto* pw = static_cast<const char*>(w.raw_data());
  auto* po = static_cast<char*>(out.raw_data());
#pragma omp parallel for schedule(static) if (count * c > kernels::cpu::kParallelGrain)
  for (int64_t k = 0; k < count; ++k) std::memcpy(po + k * row_bytes, pw + pi[k] * row_bytes, row_bytes);  // grad_weight[idx[k]] += grad_out[k] for every position k whose index is not padding_idx.
  // Column blocks run in parallel; each column adds positions in order (deterministic).
  autograd::record("embedding", out, {weight}, [idx, v, c, padding_idx](const Tensor& g_in) {
    Tensor g = g_in.raw_contiguous();  // [..., C]
    Tensor gw = Tensor::zeros({v, c}, g.dtype());  // [V, C]
    dispatch_float(g.dtype(), "embedding_backward", [&](auto tag) {
      using T = decltype(tag);
      const T* pg = g.data<T>();
      T* pgw = gw.data<T>();
      const int64_t* pi = idx.data<int64_t>();
      const int64_t count = idx.numel();
      constexpr int64_t kBlock = 256;
      const int64_t blocks = (c + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (blocks > 1 && count * c > kernels::cpu::kParallelGrain)
      for (int64_t cb = 0; cb < blocks; ++cb) {
        const int64_t c0 = cb * kBlock, c1 = std::min(c, c0 + kBlock);
        for (int64_t k = 0; k < count; ++k) {
          if (pi[k] == padding_idx) continue;
          T* dst = pgw + pi[k] * c;
          const T* src = pg + k * c;
          for (int64_t j = c0; j < c1; ++j) dst[j] += src[j];
        }
      }
    });
    return std::vector<Tensor>{gw};
  });
  return out;
}

}  // namespace heed
