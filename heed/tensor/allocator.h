// The memory behind every tensor: 64-byte aligned blocks with a process-wide cache of freed
// ones, so that a training loop, which frees and re-allocates the same sizes every step,
// stops paying for page faults on fresh memory (perf, G2P training step at one thread:
// ~5.4 % of the step was page-fault handling, 4.3 % of it the kernel zeroing new pages)
// and for malloc's bookkeeping.
//
// Requests are rounded up to a size class (multiples of 64 bytes up to 4 KiB, then four
// classes per power of two, so above 4 KiB at most 25 % is wasted) and a freed block goes
// back to its class's free list; when that would pass `cache_limit()` bytes, cached blocks
// are returned to the system first to make room, so the latest sizes stay cached. Blocks
// are never split or merged: the cache wins exactly when shapes repeat, as in a training
// loop. Recycled blocks hold stale data (as any Tensor::empty may); to let a memory checker
// (AddressSanitizer, valgrind) see every buffer's lifetime, run with the cache off.
//
// The limit is 1 GiB by default, HEED_ALLOCATOR_CACHE_MB in the environment overrides it
// (0 turns the cache off), and set_cache_limit() changes it at run time. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace heed::memory {

// The size class `bytes` is rounded up to (>= 64; a multiple of 64). Throws heed::Error
// for a request no machine can satisfy (above 2^62 bytes).
size_t size_class(size_t bytes);

// A 64-byte aligned block of at least `bytes` bytes (its size class), from the cache when
// one of that class is free. Throws heed::Error when the system has no memory left.
void* allocate(size_t bytes);

// Gives back a block from allocate(bytes), with the same `bytes`. Never throws (it runs in
// destructors): if the cache cannot take the block, the block goes to the system.
void release(void* block, size_t bytes) noexcept;

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
