// Internal: the per-instruction-set entry points of the fused attention kernels
// (flash_attention_{scalar,avx2,avx512}.cc) and the helpers they share with the dispatcher.
#pragma once

#include <cstdint>

#include "heed/kernels/cpu/flash_attention.h"

namespace heed::kernels::cpu {

namespace flash_detail {
// keep[x] = 1 iff heed::random::dropout_keep(seed, stream, index0 + x, p), for x < n.
// Lives in the dispatcher's translation unit (compiled for the baseline ISA).
void dropout_keep_mask(uint64_t seed, uint64_t stream, uint64_t index0, int64_t n, float p,
                       uint8_t* keep);
}  // namespace flash_detail

#define HEED_DECLARE_FLASH_ISA(ns)                                                    \
  namespace ns {                                                                      \
  void forward(const FlashParams& p, FlashWorkspace& ws);                             \
  void backward(const FlashParams& p, const FlashGrads& g, FlashWorkspace& ws);       \
  void weights(const FlashParams& p, const FlashWeightsRequest& r, FlashWorkspace& ws); \
  double block_probe(int64_t D, int64_t reps, int stage, double* flops); /* diagnostic */ \
  }

HEED_DECLARE_FLASH_ISA(flash_scalar)
HEED_DECLARE_FLASH_ISA(flash_avx2)
HEED_DECLARE_FLASH_ISA(flash_avx512)

#undef HEED_DECLARE_FLASH_ISA

}  // namespace heed::kernels::cpu
