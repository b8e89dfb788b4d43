// Philox-4x32-10 on 16 counter blocks at once (AVX-512F). Lane l of x0..x3 holds word 0..3
// of block first + l; a round's 32x32 -> 64-bit products come from two vpmuludq (even and
// odd lanes) for the high halves and vpmulld for the low halves. The four word vectors are
// then transposed so the 64 words leave in element order (block-major, word-minor).
#include <immintrin.h>

#include "heed/kernels/cpu/philox.h"
#include "heed/tensor/random.h"

namespace heed::kernels::cpu {

namespace {

using random::Philox4x32;

// High 32 bits of a * b per 32-bit lane.
inline __m512i mulhi_epu32(__m512i a, __m512i b) {
  const __m512i even = _mm512_srli_epi64(_mm512_mul_epu32(a, b), 32);                    // lanes 0, 2, ..
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), _mm512_srli_epi64(b, 32));  // hi in lanes 1, 3, ..
  return _mm512_mask_blend_epi32(0xAAAA, even, odd);
}

}  // namespace

void philox_words_avx512(uint64_t key, uint64_t stream, uint64_t first_block, int64_t blocks, uint32_t* words) {
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(Philox4x32::kM0));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(Philox4x32::kM1));
  const __m512i c2 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream)));
  const __m512i c3 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream >> 32)));
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  int64_t b = 0;
  for (; b + 16 <= blocks; b += 16) {
    const uint64_t first = first_block + static_cast<uint64_t>(b);
    // Counter low words first + l; the high word carries where the low one wrapped.
    __m512i x0 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(first))), lane);
    const __mmask16 wrapped = _mm512_cmplt_epu32_mask(x0, lane);
    __m512i x1 = _mm512_mask_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(first >> 32))),
                                       wrapped, _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(first >> 32))),
                                       _mm512_set1_epi32(1));
    __m512i x2 = c2, x3 = c3;
    uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
    for (int round = 0; round < 10; ++round) {
      const __m512i hi0 = mulhi_epu32(m0, x0), lo0 = _mm512_mullo_epi32(m0, x0);
      const __m512i hi1 = mulhi_epu32(m1, x2), lo1 = _mm512_mullo_epi32(m1, x2);
      x0 = _mm512_xor_si512(_mm512_xor_si512(hi1, x1), _mm512_set1_epi32(static_cast<int>(k0)));
      x1 = lo1;
      x2 = _mm512_xor_si512(_mm512_xor_si512(hi0, x3), _mm512_set1_epi32(static_cast<int>(k1)));
      x3 = lo0;
      k0 += Philox4x32::kW0;
      k1 += Philox4x32::kW1;
    }
    // Transpose 4 x 16 words to 16 blocks x 4 words. Within each 128-bit lane k:
    const __m512i t0 = _mm512_unpacklo_epi32(x0, x1), t1 = _mm512_unpackhi_epi32(x0, x1);
    const __m512i t2 = _mm512_unpacklo_epi32(x2, x3), t3 = _mm512_unpackhi_epi32(x2, x3);
    const __m512i u0 = _mm512_unpacklo_epi64(t0, t2);  // block 4k
    const __m512i u1 = _mm512_unpackhi_epi64(t0, t2);  // block 4k + 1
    const __m512i u2 = _mm512_unpacklo_epi64(t1, t3);  // block 4k + 2
    const __m512i u3 = _mm512_unpackhi_epi64(t1, t3);  // block 4k + 3
    // Then a 4 x 4 transpose of 128-bit lanes: output m = lane m of u0, u1, u2, u3.
    const __m512i v0 = _mm512_shuffle_i32x4(u0, u1, 0x44), v1 = _mm512_shuffle_i32x4(u0, u1, 0xEE);
    const __m512i v2 = _mm512_shuffle_i32x4(u2, u3, 0x44), v3 = _mm512_shuffle_i32x4(u2, u3, 0xEE);
    uint32_t* out = words + 4 * b;
    _mm512_storeu_si512(out, _mm512_shuffle_i32x4(v0, v2, 0x88));
    _mm512_storeu_si512(out + 16, _mm512_shuffle_i32x4(v0, v2, 0xDD));
    _mm512_storeu_si512(out + 32, _mm512_shuffle_i32x4(v1, v3, 0x88));
    _mm512_storeu_si512(out + 48, _mm512_shuffle_i32x4(v1, v3, 0xDD));
  }
  philox_words_scalar(key, stream, first_block + static_cast<uint64_t>(b), blocks - b, words + 4 * b);
}

}  // namespace heed::kernels::cpu
