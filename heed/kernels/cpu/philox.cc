// Philox words: the scalar path and the run-time choice of path.
#include "heed/kernels/cpu/philox.h"

#include "heed/tensor/random.h"

namespace heed::kernels::cpu {

bool cpu_has_avx512f() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

void philox_words_scalar(uint64_t key, uint64_t stream, uint64_t first_block, int64_t blocks, uint32_t* words) {
  for (int64_t b = 0; b < blocks; ++b) {
    const uint64_t block = first_block + static_cast<uint64_t>(b);
    uint32_t c[4] = {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), static_cast<uint32_t>(stream),
                     static_cast<uint32_t>(stream >> 32)};
    random::Philox4x32::generate(key, c, words + 4 * b);
  }
}

void philox_words(uint64_t key, uint64_t stream, uint64_t first_block, int64_t blocks, uint32_t* words) {
  if (cpu_has_avx512f()) philox_words_avx512(key, stream, first_block, blocks, words);
  else philox_words_scalar(key, stream, first_block, blocks, words);
}

}  // namespace heed::kernels::cpu
