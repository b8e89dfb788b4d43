// gemm_packed against a naive double-precision product on awkward sizes: rows around the
// 14-row register tile and the 168-row block, columns around the 32-column panel and the
// 1024-column block, k around the 256-deep block; all four transpose combinations, strided
// operands, alpha / beta, bias and ReLU. beta = 0 never reads C, alpha = 0 never reads A or B,
// nothing outside C is written, and sub-blocks of a product give the same bits as the whole.
#include "heed/kernels/cpu/gemm_packed.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "heed/kernels/cpu/gemm.h"
#include "heed/kernels/cpu/gemm_amx.h"
#include "heed/kernels/cpu/gemm_test_problem.h"
#include "heed/tensor/random.h"
#include "heed/testing/numerics.h"

namespace heed::kernels::cpu {
namespace {

using testing::uniform_floats;

using Problem = gemm_test::GemmProblem;

void check(const Problem& q) {
  const gemm_test::GemmOperands o = gemm_test::gemm_operands(q);
  const auto& [lda, ldb, ldc, a, b, bias, c0, mask] = o;
  std::vector<float> c = c0;
  ASSERT_TRUE(gemm_packed(q.ta, q.tb, q.m, q.n, q.k, q.alpha, a.data(), lda, b.data(), ldb, q.beta, c.data(), ldc,
              o.epilogue(q)));
  std::vector<double> got(q.m * q.n), want(q.m * q.n);
  for (int64_t i = 0; i < q.m; ++i) {
    for (int64_t j = q.n; j < ldc; ++j) {
      const float now = c[i * ldc + j], was = c0[i * ldc + j];
      ASSERT_TRUE(std::isnan(now) ? std::isnan(was) : now == was) << "wrote outside C at " << i << "," << j;
    }
    for (int64_t j = 0; j < q.n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < q.k; ++p)
        s += static_cast<double>(o.A(q, i, p)) * o.B(q, p, j);
      want[i * q.n + j] = o.finish(q, s, i, j);
      got[i * q.n + j] = c[i * ldc + j];
    }
  }
  EXPECT_TRUE(testing::all_close(Tensor::from_vector(got, {q.m, q.n}), Tensor::from_vector(want, {q.m, q.n}),
                                 testing::kReduction))
      << "ta=" << q.ta << " tb=" << q.tb << " m=" << q.m << " n=" << q.n << " k=" << q.k << " alpha=" << q.alpha
      << " beta=" << q.beta << " bias=" << q.bias << " relu=" << q.relu << " grad_mask=" << q.grad_mask;
}

TEST(GemmPacked, MatchesNaiveReferenceOnAwkwardSizes) {
  if (!gemm_packed_available()) GTEST_SKIP() << "no AVX-512 on this CPU";
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      for (int64_t m : {1, 13, 14, 15, 29, 169})
        for (int64_t n : {1, 7, 31, 33, 65})
          for (int64_t k : {1, 17, 255, 256, 257, 600}) check({ta, tb, m, n, k});
      check({ta, tb, 33, 1025, 40});                                  // two column blocks
      check({ta, tb, 30, 1100, 300, 0, 0, 0, 1.0f, 0.5f, true, true});  // ... with bias, ReLU, beta, two k blocks
      check({ta, tb, 200, 1100, 300, 0, 0, 3, 1.0f, 0.0f, false, false, true});  // ReLU's gradient mask
      check({ta, tb, 15, 33, 17, 2, 2, 1, 1.0f, 0.0f, false, false, true});
      check({ta, tb, 20, 40, 30, 0, 0, 0, -0.5f, 0.5f, true, true, true});  // with everything
      check({ta, tb, 6, 7, 0, 0, 0, 0, 1.0f, 0.5f, true, false, true});     // k = 0: beta C + bias, masked
      check({ta, tb, 337, 70, 300, 3, 5, 2, 0.5f, 1.0f});             // strided, accumulate into C
      check({ta, tb, 20, 40, 513, 0, 0, 0, -1.5f, 0.25f, true, true});  // three k blocks, everything
    }
  // What a G2P training step runs: x W^T (+ bias, ReLU), dY W, dY^T X.
  check({false, true, 1536, 1024, 256, 0, 0, 0, 1.0f, 0.0f, true, true});
  check({false, false, 1536, 256, 1024});
  check({true, false, 256, 1024, 1536});
}

TEST(GemmPacked, BiasAndReluFollowHeedsRelu) {
  if (!gemm_packed_available()) GTEST_SKIP() << "no AVX-512 on this CPU";
  // Products of 0 plus bias {-1, 0, -0, 2, NaN}: ReLU as heed::relu (v > 0 ? v : 0) maps
  // -1, 0, -0 and NaN to +0 and keeps 2.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> a(3 * 4, 0.0f), b(4 * 5, 0.0f), bias = {-1.0f, 0.0f, -0.0f, 2.0f, nan};
  std::vector<float> c(3 * 5, 7.0f);
  gemm_packed(false, false, 3, 5, 4, 1.0f, a.data(), 4, b.data(), 5, 0.0f, c.data(), 5, {bias.data(), true});
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 5; ++j) {
      const float v = c[i * 5 + j];
      EXPECT_TRUE(j == 3 ? v == 2.0f : (v == 0.0f && !std::signbit(v))) << i << "," << j << ": " << v;
    }
}

// alpha == 0 or k == 0 reads neither A nor B (BLAS semantics): NaN there does not reach C.
TEST(GemmPacked, AlphaOrKZeroScalesCOnly) {
  if (!gemm_packed_available()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const std::vector<float> nan(4 * 20, std::numeric_limits<float>::quiet_NaN()), bias = {1, -10, 0};
  std::vector<float> c = {1, 2, 3, 4, 5, 6};
  gemm_packed(false, true, 2, 3, 20, 0.0f, nan.data(), 20, nan.data(), 20, 0.5f, c.data(), 3);
  EXPECT_EQ(c, (std::vector<float>{0.5f, 1, 1.5f, 2, 2.5f, 3}));
  gemm_packed(true, false, 2, 3, 0, 1.0f, nan.data(), 2, nan.data(), 3, 2.0f, c.data(), 3, {bias.data(), true});
  EXPECT_EQ(c, (std::vector<float>{2, 0, 3, 5, 0, 6}));
  gemm_packed(false, false, 2, 3, 20, 0.0f, nan.data(), 20, nan.data(), 3, 0.0f, c.data(), 3);
  EXPECT_EQ(c, std::vector<float>(6, 0.0f));
}

// Each element is summed the same way wherever it falls in the tiles, so splitting a product
// into row and column blocks (as kernels/cpu/gemm.cc's tiling does) cannot change any bit.
// For both packed kernels: f32 (k in blocks of 256) and bf16 on AMX (blocks of 512).
TEST(GemmPacked, BlocksOfAProductGiveTheSameBitsAsTheWhole) {
  using Kernel = bool (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                          float, float*, int64_t, const GemmEpilogueF32&);
  std::vector<std::pair<const char*, Kernel>> kernels;
  if (gemm_packed_available()) kernels.emplace_back("gemm_packed", &gemm_packed);
  if (gemm_amx_available()) kernels.emplace_back("gemm_amx_bf16", &gemm_amx_bf16);
  if (kernels.empty()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const int64_t m = 181, n = 75, k = 1030;
  for (const auto& [name, kernel] : kernels)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const std::vector<float> a = uniform_floats(m * k, 4), b = uniform_floats(n * k, 5), bias = uniform_floats(n, 6);
        const int64_t lda = ta ? m : k, ldb = tb ? k : n;
        std::vector<float> whole(m * n), parts(m * n);
        kernel(ta, tb, m, n, k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, whole.data(), n, {bias.data(), true});
        for (int64_t i0 = 0; i0 < m; i0 += 50)
          for (int64_t j0 = 0; j0 < n; j0 += 20) {
            const int64_t mi = std::min<int64_t>(50, m - i0), nj = std::min<int64_t>(20, n - j0);
            kernel(ta, tb, mi, nj, k, 1.0f, a.data() + (ta ? i0 : i0 * lda), lda, b.data() + (tb ? j0 * ldb : j0), ldb,
                   0.0f, parts.data() + i0 * n + j0, n, {bias.data() + j0, true});
          }
        for (int64_t x = 0; x < m * n; ++x)
          ASSERT_EQ(whole[x], parts[x]) << name << " ta=" << ta << " tb=" << tb << " element " << x;
      }
}

// HEED_GEMM=blas / set_gemm_backend(kBlas) sends f32 products to CBLAS; both backends agree
// within the GEMM tolerance, bias and ReLU included.
TEST(GemmPacked, BlasBackendAgrees) {
  const int64_t m = 300, n = 130, k = 270;
  const std::vector<float> a = uniform_floats(m * k, 7), b = uniform_floats(n * k, 8), bias = uniform_floats(n, 9);
  const GemmParams p{.trans_a = false, .trans_b = true, .m = m, .n = n, .k = k, .lda = k, .ldb = k, .ldc = n};
  std::vector<float> ours(m * n), blas(m * n);
  const GemmBackend saved = gemm_backend();
  set_gemm_backend(GemmBackend::kAuto);
  gemm(p, a.data(), b.data(), ours.data(), {bias.data(), true});
  set_gemm_backend(GemmBackend::kBlas);
  gemm(p, a.data(), b.data(), blas.data(), {bias.data(), true});
  set_gemm_backend(saved);
  EXPECT_TRUE(testing::all_close(Tensor::from_vector(ours, {m, n}), Tensor::from_vector(blas, {m, n}),
                                 testing::kReduction));
}

}  // namespace
}  // namespace heed::kernels::cpu
