// CPU dropout on a contiguous array. Element i is kept iff
// heed::random::dropout_keep(seed, stream, i, p): one Philox block serves four elements
// (words i % 4 of block i / 4, exactly as heed::random::uniform draws them).
#pragma once

#include <cstdint>

#include "heed/kernels/cpu/elementwise.h"
#include "heed/tensor/random.h"

namespace heed::kernels::cpu {

struct DropoutParams {
  uint64_t seed = 0, stream = 0;
  float p = 0;       // drop probability, compared in float as dropout_keep does
  double scale = 1;  // kept values are multiplied by this (1 / (1 - p))
};

// y[i] = keep(i) ? x[i] * scale : 0 for i < n. Applying it to a gradient gives the backward.
template <class T>
void dropout_apply(const DropoutParams& p, int64_t n, const T* x, T* y) {
  const int64_t blocks = (n + 3) / 4;
  const T scale = static_cast<T>(p.scale);
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const uint64_t ub = static_cast<uint64_t>(blk);
    uint32_t c[4] = {static_cast<uint32_t>(ub), static_cast<uint32_t>(ub >> 32), static_cast<uint32_t>(p.stream),
                     static_cast<uint32_t>(p.stream >> 32)};
    uint32_t r[4];
    random::Philox4x32::generate(p.seed, c, r);
    const int64_t i0 = blk * 4;
    for (int64_t j = 0; j < 4 && i0 + j < n; ++j) {
      const float u = static_cast<float>(r[j] >> 8) * (1.0f / 16777216.0f);
      y[i0 + j] = u >= p.p ? x[i0 + j] * scale : T(0);
    }
  }
}

}  // namespace heed::kernels::cpu
