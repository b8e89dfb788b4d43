// The AVX-512 build of the fused attention kernels (flash_attention_impl.h with 16-lane
// vectors), plus the BF16 block products (vdpbf16ps) of FlashPrecision::kBF16.
#include "heed/kernels/cpu/vec_avx512.h"

#define HEED_FLASH_NS flash_avx512
#define HEED_FLASH_BF16 0

namespace heed::kernels::cpu::flash_avx512 {
using V = avx512::Vec;
struct Cfg {
  static constexpr int kMr = 6;  // 6 x 4 zmm accumulators (4x4, 8x2, 5x4, 7x3 measured no better)
  static constexpr int kNv = 4;
  static constexpr int kBlockRows = 64;
  static constexpr int kBlockKeys = 64;  // 96 and 128 measured no better
};
}  // namespace heed::kernels::cpu::flash_avx512

#include "heed/kernels/cpu/flash_attention_impl.h"
