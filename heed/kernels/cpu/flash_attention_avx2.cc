// The AVX2 + FMA build of the fused attention kernels (flash_attention_impl.h with 8-lane
// vectors), chosen at run time on CPUs without AVX-512.
#include "heed/kernels/cpu/vec_avx2.h"

#define HEED_FLASH_NS flash_avx2
#define HEED_FLASH_BF16 0

namespace heed::kernels::cpu::flash_avx2 {
using V = avx2::Vec;
struct Cfg {
  static constexpr int kMr = 6;  // 6 x 2 ymm accumulators, as in Haswell sgemm kernels
  static constexpr int kNv = 2;
  static constexpr int kBlockRows = 64;
  static constexpr int kBlockKeys = 64;
};
}  // namespace heed::kernels::cpu::flash_avx2

#include "heed/kernels/cpu/flash_attention_impl.h"
