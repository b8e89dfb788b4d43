// Tests for the tensor memory cache: size classes, reuse, the limit, threads.
#include "heed/tensor/allocator.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "heed/tensor/error.h"
#include "heed/tensor/tensor.h"

namespace heed::memory {
namespace {

// Restores the cache limit a test changed.
struct LimitGuard {
  size_t saved = cache_limit();
  ~LimitGuard() { set_cache_limit(saved); }
};

TEST(Allocator, SizeClassesCoverTheRequestAndWasteAtMostAQuarter) {
  EXPECT_EQ(size_class(0), 64u);
  EXPECT_EQ(size_class(1), 64u);
  EXPECT_EQ(size_class(64), 64u);
  EXPECT_EQ(size_class(65), 128u);
  EXPECT_EQ(size_class(4096), 4096u);
  EXPECT_EQ(size_class(4097), 5120u);  // 4096 + 1024
  EXPECT_EQ(size_class(8192), 8192u);
  EXPECT_EQ(size_class(8193), 10240u);
  for (size_t bytes : {1ul, 63ul, 100ul, 4095ul, 4097ul, 5121ul, 12345ul, 999'999ul, 3'000'001ul, 1ul << 30}) {
    const size_t c = size_class(bytes);
    EXPECT_GE(c, bytes);
    EXPECT_EQ(c % 64, 0u) << bytes;
    if (bytes > 4096) EXPECT_LE(c, bytes + bytes / 4) << bytes;
    EXPECT_EQ(size_class(c), c) << bytes;  // a class is its own class
  }
}

TEST(Allocator, AFreedBlockServesTheNextRequestOfItsClass) {
  LimitGuard guard;
  set_cache_limit(size_t{64} << 20);
  empty_cache();
  void* a = allocate(100'000);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 64, 0u);
  release(a, 100'000);
  EXPECT_EQ(cache_stats().cached_bytes, size_class(100'000));
  const int64_t hits = cache_stats().hits;
  void* b = allocate(size_class(100'000) - 5);  // another size of the same class
  EXPECT_EQ(b, a);
  EXPECT_EQ(cache_stats().hits, hits + 1);
  EXPECT_EQ(cache_stats().cached_bytes, 0u);
  release(b, size_class(100'000) - 5);
  empty_cache();
  EXPECT_EQ(cache_stats().cached_bytes, 0u);
}

TEST(Allocator, TheLimitBoundsWhatIsKept) {
  LimitGuard guard;
  empty_cache();
  set_cache_limit(0);
  void* a = allocate(10'000);
  release(a, 10'000);
  EXPECT_EQ(cache_stats().cached_bytes, 0u);  // no caching at all

  set_cache_limit(3 * size_class(10'000));
  std::vector<void*> blocks;
  for (int i = 0; i < 5; ++i) blocks.push_back(allocate(10'000));
  for (void* p : blocks) release(p, 10'000);
  EXPECT_EQ(cache_stats().cached_bytes, 3 * size_class(10'000));
  set_cache_limit(size_class(10'000));  // shrinking frees at once
  EXPECT_EQ(cache_stats().cached_bytes, size_class(10'000));
  empty_cache();
}

TEST(Allocator, ANewSizeEvictsCachedBlocksWhenTheCacheIsFull) {
  LimitGuard guard;
  empty_cache();
  set_cache_limit(2 * size_class(10'000));
  void* a1 = allocate(10'000);
  void* a2 = allocate(10'000);
  release(a1, 10'000);
  release(a2, 10'000);
  EXPECT_EQ(cache_stats().cached_bytes, 2 * size_class(10'000));
  void* b = allocate(9'000);  // another class: a miss
  release(b, 9'000);          // kept; a 10,000-byte block makes room
  EXPECT_LE(cache_stats().cached_bytes, 2 * size_class(10'000));
  const int64_t hits = cache_stats().hits;
  void* b2 = allocate(9'000);
  EXPECT_EQ(b2, b);
  EXPECT_EQ(cache_stats().hits, hits + 1);
  release(b2, 9'000);
  empty_cache();
  EXPECT_THROW(allocate(~size_t{0} - 10), Error);  // an overflowed size is an error, not a tiny block
}

TEST(Allocator, TensorsReuseFreedBlocks) {
  LimitGuard guard;
  set_cache_limit(size_t{64} << 20);
  empty_cache();
  const void* first = nullptr;
  {
    Tensor t = Tensor::full({37, 53}, 2.5);
    first = t.raw_data();
  }
  Tensor u = Tensor::zeros({53, 37});  // same bytes: the same block, zeroed by zeros()
  EXPECT_EQ(u.raw_data(), first);
  for (int64_t i = 0; i < u.numel(); ++i) ASSERT_EQ(u.data<float>()[i], 0.0f);
  Tensor v = Tensor::full({37, 53}, 1.0);  // the first block is in use: a different one
  EXPECT_NE(v.raw_data(), u.raw_data());
}

// Threads fill whole blocks with their own byte and check them after other threads had
// time to run: two threads handed the same block would overwrite each other.
TEST(Allocator, ManyThreadsAllocateAndReleaseConcurrently) {
  LimitGuard guard;
  set_cache_limit(size_t{16} << 20);
  int64_t corrupted = 0;
#pragma omp parallel num_threads(4) reduction(+ : corrupted)
  {
    const int t = omp_get_thread_num();
    for (int i = 0; i < 500; ++i) {
      const size_t bytes = 64 + static_cast<size_t>((i * 7919 + t * 104729) % 50'000);
      auto* p = static_cast<unsigned char*>(allocate(bytes));
      std::memset(p, t + 1, bytes);
      std::this_thread::yield();
      for (size_t j = 0; j < bytes; ++j) corrupted += p[j] != t + 1;
      release(p, bytes);
    }
  }
  EXPECT_EQ(corrupted, 0);
  EXPECT_LE(cache_stats().cached_bytes, size_t{16} << 20);
  empty_cache();
}

}  // namespace
}  // namespace heed::memory
