// Bulk Philox-4x32-10 words for consecutive counter blocks: the generator behind dropout,
// drawn 16 blocks at a time with AVX-512 where the CPU has it, else one block at a time.
// Both paths give exactly heed::random::Philox4x32::generate's words.
#pragma once

#include <cstdint>

namespace heed::kernels::cpu {

// words[4 b + j] = word j of Philox4x32(key, counter = {first_block + b, stream}) for
// b < blocks: element i of a stream uses word i % 4 of block i / 4 (heed::random::uniform),
// so the words come out in element order.
void philox_words(uint64_t key, uint64_t stream, uint64_t first_block, int64_t blocks, uint32_t* words);

// The one-block-at-a-time path, always available (the reference for the vector one).
void philox_words_scalar(uint64_t key, uint64_t stream, uint64_t first_block, int64_t blocks, uint32_t* words);

// The AVX-512 path; call only where cpu_has_avx512f().
void philox_words_avx512(uint64_t key, uint64_t stream, uint64_t first_block, int64_t blocks, uint32_t* words);

bool cpu_has_avx512f();

}  // namespace heed::kernels::cpu
