// gemm_nt_small against heed's double-precision reference (kernels/ref) on awkward sizes (rows around the
// 3-row tile, columns around the 8-column tile, k around the 16-lane vector), strided operands,
// alpha / beta; beta = 0 never reads C; sub-blocks of a product give the same bits as the whole.
#include "heed/kernels/cpu/gemm_small.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "heed/kernels/ref/ops_ref.h"
#include "heed/tensor/random.h"
#include "heed/testing/numerics.h"

namespace heed::kernels::cpu {
namespace {

using testing::uniform_floats;

struct Problem {
  int64_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
};

// Runs the kernel on C pre-filled with c0: the padding columns of C stay as they were, and
// the product matches alpha * ref::linear(A, B) + beta * c0 (double) within STYLE.md's GEMM
// tolerance.
void check(const Problem& q) {
  const std::vector<float> a = uniform_floats(q.m * q.lda, 1), b = uniform_floats(q.n * q.ldb, 2);
  std::vector<float> c0 = uniform_floats(q.m * q.ldc, 3);
  if (q.beta == 0.0f)  // must not be read: NaN would poison every output it touched
    for (auto& x : c0) x = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> c = c0;
  gemm_nt_small(q.m, q.n, q.k, q.alpha, a.data(), q.lda, b.data(), q.ldb, q.beta, c.data(), q.ldc);
  for (int64_t i = 0; i < q.m; ++i)
    for (int64_t j = q.n; j < q.ldc; ++j) {
      const float got = c[i * q.ldc + j], was = c0[i * q.ldc + j];
      ASSERT_TRUE(std::isnan(got) ? std::isnan(was) : got == was) << "wrote outside C at " << i << "," << j;
    }
  auto view = [](const std::vector<float>& v, int64_t rows, int64_t ld, int64_t cols) {
    return Tensor::from_vector(v, {rows, ld}).raw_slice(1, 0, cols).to(DType::kF64);
  };
  const Tensor product = ref::linear(view(a, q.m, q.lda, q.k), view(b, q.n, q.ldb, q.k), Tensor());
  std::vector<double> want = product.raw_contiguous().to_vector<double>();
  if (q.beta != 0.0f) {
    const std::vector<double> before = view(c0, q.m, q.ldc, q.n).raw_contiguous().to_vector<double>();
    for (size_t x = 0; x < want.size(); ++x) want[x] = q.alpha * want[x] + static_cast<double>(q.beta) * before[x];
  } else {
    for (double& w : want) w *= q.alpha;
  }
  EXPECT_TRUE(testing::all_close(view(c, q.m, q.ldc, q.n), Tensor::from_vector(want, {q.m, q.n}), testing::kReduction))
      << "m=" << q.m << " n=" << q.n << " k=" << q.k << " alpha=" << q.alpha << " beta=" << q.beta;
}

TEST(GemmNtSmall, MatchesNaiveReferenceOnAwkwardSizes) {
  if (!gemm_nt_small_available()) GTEST_SKIP() << "no AVX-512 on this CPU";
  for (int64_t m : {1, 2, 3, 4, 5, 7, 33})
    for (int64_t n : {1, 7, 8, 9, 17, 33})
      for (int64_t k : {0, 1, 15, 16, 17, 100, 257}) {
        check({m, n, k, k, k, n, 1.0f, 0.0f});
        check({m, n, k, k + 3, k + 5, n + 2, 0.5f, 1.0f});  // strided rows, accumulate into C
      }
  check({5, 9, 33, 33, 33, 9, -1.5f, 0.0f});            // alpha applied without beta
  check({64, 20, 40, 40, 40, 20, 1.0f, 0.0f});           // the dispatch limit in gemm.cc
  check({24, 1024, 256, 256, 256, 1024, 1.0f, 0.0f});  // a G2P feed-forward layer, one word
  check({6, 40, 1000, 1000, 1000, 40, -2.0f, 0.25f});
}

// alpha == 0 reads neither A nor B (BLAS semantics): NaN there does not reach C.
TEST(GemmNtSmall, AlphaZeroScalesCOnly) {
  if (!gemm_nt_small_available()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const std::vector<float> nan(4 * 20, std::numeric_limits<float>::quiet_NaN());
  std::vector<float> c = {1, 2, 3, 4, 5, 6};
  gemm_nt_small(2, 3, 20, 0.0f, nan.data(), 20, nan.data(), 20, 0.5f, c.data(), 3);
  EXPECT_EQ(c, (std::vector<float>{0.5f, 1, 1.5f, 2, 2.5f, 3}));
  gemm_nt_small(2, 3, 20, 0.0f, nan.data(), 20, nan.data(), 20, 0.0f, c.data(), 3);
  EXPECT_EQ(c, std::vector<float>(6, 0.0f));
}

// Each element is summed the same way wherever it falls in the tiles, so splitting a product
// into row and column blocks (as kernels/cpu/gemm.cc's tiling does) cannot change any bit.
TEST(GemmNtSmall, BlocksOfAProductGiveTheSameBitsAsTheWhole) {
  if (!gemm_nt_small_available()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const int64_t m = 11, n = 29, k = 77;
  const std::vector<float> a = uniform_floats(m * k, 4), b = uniform_floats(n * k, 5);
  std::vector<float> whole(m * n), parts(m * n);
  gemm_nt_small(m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, whole.data(), n);
  for (int64_t i0 = 0; i0 < m; i0 += 4)
    for (int64_t j0 = 0; j0 < n; j0 += 5) {
      const int64_t mi = std::min<int64_t>(4, m - i0), nj = std::min<int64_t>(5, n - j0);
      gemm_nt_small(mi, nj, k, 1.0f, a.data() + i0 * k, k, b.data() + j0 * k, k, 0.0f, parts.data() + i0 * n + j0, n);
    }
  for (int64_t x = 0; x < m * n; ++x) ASSERT_EQ(whole[x], parts[x]) << "element " << x;
}

}  // namespace
}  // namespace heed::kernels::cpu
