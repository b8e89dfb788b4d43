// The portable scalar build of the fused attention kernels (flash_attention_impl.h with
// one-lane vectors): the fallback on CPUs without AVX2, and a second opinion in tests.
#include "heed/kernels/cpu/vec_scalar.h"

#define HEED_FLASH_NS flash_scalar
#define HEED_FLASH_BF16 0

namespace heed::kernels::cpu::flash_scalar {
using V = scalar::Vec;
struct Cfg {
  static constexpr int kMr = 4;           // micro-tile rows
  static constexpr int kNv = 4;           // micro-tile vectors per row
  static constexpr int kBlockRows = 64;   // query rows per block
  static constexpr int kBlockKeys = 64;   // keys per block
};
}  // namespace heed::kernels::cpu::flash_scalar

#include "heed/kernels/cpu/flash_attention_impl.h"
