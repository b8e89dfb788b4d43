#include "heed/tensor/allocator.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <iterator>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "heed/tensor/error.h"

namespace heed::memory {
namespace {

constexpr size_t kAlign = 64;
constexpr size_t kSmall = 4096;  // below this, classes are every 64 bytes

constexpr size_t kLargest = size_t{1} << 62;

// HEED_ALLOCATOR_CACHE_MB when it is a plain decimal number of MiB, else 1 GiB.
size_t default_limit() {
  if (const char* env = std::getenv("HEED_ALLOCATOR_CACHE_MB")) {
    char* end = nullptr;
    const unsigned long long mb = std::strtoull(env, &end, 10);
    if (env[0] >= '0' && env[0] <= '9' && end != env && *end == '\0' && mb <= (kLargest >> 20))
      return static_cast<size_t>(mb) << 20;
  }
  return size_t{1} << 30;
}

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free;  // size class -> blocks
  size_t cached = 0;
  size_t limit = default_limit();
  int64_t hits = 0;
  int64_t misses = 0;

  // Frees blocks (any class) until at most `target` bytes stay cached. Holds mu.
  void trim_to(size_t target) {
    for (auto it = free.begin(); it != free.end() && cached > target;) {
      std::vector<void*>& blocks = it->second;
      while (!blocks.empty() && cached > target) {
        std::free(blocks.back());
        blocks.pop_back();
        cached -= it->first;
      }
      it = blocks.empty() ? free.erase(it) : std::next(it);
    }
  }
};

// Never destroyed: tensors with static storage duration may be freed after every other
// static object has gone.
Cache& cache() {
  static Cache* c = new Cache;
  return *c;
}

}  // namespace

size_t size_class(size_t bytes) {
  HEED_CHECK(bytes <= kLargest, "tensor: cannot allocate ", bytes, " bytes (more than 2^62; an overflowed size?)");
  if (bytes <= kSmall) return (std::max<size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign;
  // Four classes per power of two: 2^k, 1.25 * 2^k, 1.5 * 2^k, 1.75 * 2^k.
  const size_t high = std::bit_floor(bytes);
  const size_t step = high / 4;
  return (bytes + step - 1) / step * step;
}

void* allocate(size_t bytes) {
  const size_t cls = size_class(bytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free.find(cls);
    if (it != c.free.end() && !it->second.empty()) {
      void* block = it->second.back();
      it->second.pop_back();
      c.cached -= cls;
      ++c.hits;
      return block;
    }
    ++c.misses;
  }
  void* block = std::aligned_alloc(kAlign, cls);
  if (block == nullptr) {
    empty_cache();  // the cache may hold what the system now lacks
    block = std::aligned_alloc(kAlign, cls);
  }
  HEED_CHECK(block != nullptr, "tensor: out of memory allocating ", bytes, " bytes");
  return block;
}

void release(void* block, size_t bytes) noexcept {
  if (block == nullptr) return;
  const size_t cls = size_class(bytes);  // cannot throw: allocate() accepted `bytes`
  Cache& c = cache();
  try {
    std::lock_guard<std::mutex> lock(c.mu);
    if (cls <= c.limit) {
      if (c.cached + cls > c.limit) c.trim_to(c.limit - cls);  // cached blocks make room
      c.free[cls].push_back(block);
      c.cached += cls;
      return;
    }
  } catch (...) {  // no memory for the free list itself: give the block back instead
  }
  std::free(block);
}

CacheStats cache_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return CacheStats{.hits = c.hits, .misses = c.misses, .cached_bytes = c.cached, .limit_bytes = c.limit};
}

void empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.trim_to(0);
}

void set_cache_limit(size_t bytes) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.limit = bytes;
  c.trim_to(bytes);
}

size_t cache_limit() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.limit;
}

}  // namespace heed::memory
