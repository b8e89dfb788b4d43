// The memory behind every tensor: 64-byte aligned blocks with a process-wide cache of freed
// ones, so that a training loop, which frees and re-allocates the same sizes every step,
// stops paying for page faults on fresh memory (perf, G2P training step at one thread:
// ~5.5 % of the step was the kernel zeroing new pages) and for malloc's bookkeeping.
//
// Requests are rounded up to a size class (multiples of 64 bytes up to 4 KiB, then four
// classes per power of two, so at most 25 % is wasted) and a freed block goes back to its
// class's free list unless the cache already holds `cache_limit()` bytes, in which case it
// is returned to the system. Blocks are never split or merged: like PyTorch's CPU caching
// of equal-sized tensors, the cache wins exactly when shapes repeat.
//
// The limit is 1 GiB by default, HEED_ALLOCATOR_CACHE_MB in the environment overrides it
// (0 turns the cache off), and set_cache_limit() changes it at run time. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace heed::memory {

// The size class `bytes` is rounded up to (>= 64; a multiple of 64).
size_t size_class(size_t bytes);

// A 64-byte aligned block of at least `bytes` bytes (its size class), from the cache when
// one of that class is free. Throws heed::Error when the system has no memory left.
void* allocate(size_t bytes);

// Gives back a block from allocate(bytes), with the same `bytes`.
void release(void* block, size_t bytes);

struct CacheStats {
  int64_t hits = 0;           // allocations served from the cache
  int64_t misses = 0;         // allocations that went to the system
  size_t cached_bytes = 0;    // held in free lists now
  size_t limit_bytes = 0;
};
CacheStats cache_stats();

// Returns every cached block to the system (tensors in use are unaffected).
void empty_cache();

// Sets the most the cache may hold (0: no caching); shrinks it at once if needed.
void set_cache_limit(size_t bytes);
size_t cache_limit();

}  // namespace heed::memory
