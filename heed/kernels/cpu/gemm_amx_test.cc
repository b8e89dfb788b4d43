// gemm_amx_bf16 on awkward sizes (rows around the 16-row tile and 32-row block, columns
// around the 32-column block and 512-column panel, k around the 32-deep chunk and 512-deep
// block), all four transpose combinations, strided operands, alpha / beta, bias, ReLU and
// ReLU's gradient mask:
// - against a double-precision product of the bf16-rounded operands (bf16 products are exact
//   in f32, so only the f32 sums differ: the f32 GEMM tolerance), which checks the packing;
// - against the f32 product, with STYLE.md's bf16 rule: error at most 2x that of a naive bf16
//   GEMM (operands rounded, sums in f32 in k order), both measured against double.
// beta = 0 never reads C, nothing outside C is written, and blocks of a product give the same
// bits as the whole (that test is in gemm_packed_test.cc, for both kernels).
#include "heed/kernels/cpu/gemm_amx.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <vector>

#include "heed/kernels/cpu/gemm.h"
#include "heed/kernels/cpu/gemm_test_problem.h"
#include "heed/testing/numerics.h"

namespace heed::kernels::cpu {
namespace {

using testing::uniform_floats;

// Round to nearest even bf16, back in f32 (no NaN among the test's operands).
float bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  std::memcpy(&f, &u, 4);
  return f;
}

using Problem = gemm_test::GemmProblem;

void check(const Problem& q) {
  const gemm_test::GemmOperands o = gemm_test::gemm_operands(q, 2);  // two sentinel rows past m
  const auto& [lda, ldb, ldc, a, b, bias, c0, mask] = o;
  std::vector<float> c = c0;
  ASSERT_TRUE(gemm_amx_bf16(q.ta, q.tb, q.m, q.n, q.k, q.alpha, a.data(), lda, b.data(), ldb, q.beta, c.data(), ldc,
                            o.epilogue(q)));
  for (int64_t x = q.m * ldc; x < (q.m + 2) * ldc; ++x)
    ASSERT_TRUE(std::isnan(c[x]) ? std::isnan(c0[x]) : c[x] == c0[x]) << "wrote past row m at " << x;
  std::vector<double> got(q.m * q.n), rounded(q.m * q.n), exact(q.m * q.n), naive(q.m * q.n);
  for (int64_t i = 0; i < q.m; ++i) {
    for (int64_t j = q.n; j < ldc; ++j) {
      const float now = c[i * ldc + j], was = c0[i * ldc + j];
      ASSERT_TRUE(std::isnan(now) ? std::isnan(was) : now == was) << "wrote outside C at " << i << "," << j;
    }
    for (int64_t j = 0; j < q.n; ++j) {
      double s_rounded = 0, s_exact = 0;
      float s_naive = 0;
      for (int64_t p = 0; p < q.k; ++p) {
        const float x = o.A(q, i, p), y = o.B(q, p, j);
        s_rounded += static_cast<double>(bf16(x)) * bf16(y);
        s_exact += static_cast<double>(x) * y;
        s_naive += bf16(x) * bf16(y);
      }
      got[i * q.n + j] = c[i * ldc + j];
      rounded[i * q.n + j] = o.finish(q, s_rounded, i, j);
      exact[i * q.n + j] = o.finish(q, s_exact, i, j);
      naive[i * q.n + j] = static_cast<float>(o.finish(q, s_naive, i, j));  // an f32 result, as C
    }
  }
  const auto where = [&] {
    std::ostringstream os;
    os << "ta=" << q.ta << " tb=" << q.tb << " m=" << q.m << " n=" << q.n << " k=" << q.k << " alpha=" << q.alpha
       << " beta=" << q.beta << " bias=" << q.bias << " relu=" << q.relu << " grad_mask=" << q.grad_mask;
    return os.str();
  };
  EXPECT_TRUE(testing::all_close(Tensor::from_vector(got, {q.m, q.n}), Tensor::from_vector(rounded, {q.m, q.n}),
                                 testing::kReduction))
      << where();
  double err = 0, err_naive = 0;
  for (int64_t x = 0; x < q.m * q.n; ++x) {
    err = std::max(err, std::abs(got[x] - exact[x]));
    err_naive = std::max(err_naive, std::abs(naive[x] - exact[x]));
  }
  EXPECT_LE(err, 2 * err_naive) << where();
}

TEST(GemmAmx, MatchesReferencesOnAwkwardSizes) {
  if (!gemm_amx_available()) GTEST_SKIP() << "no AMX-BF16 on this CPU (or no tile permission)";
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      for (int64_t m : {1, 15, 16, 17, 33, 70})
        for (int64_t n : {1, 7, 31, 33, 65})
          for (int64_t k : {1, 17, 32, 33, 511, 513}) check({ta, tb, m, n, k});
      check({ta, tb, 40, 1100, 100});                                   // three column panels
      check({ta, tb, 30, 520, 600, 0, 0, 0, 1.0f, 0.5f, true, true});    // bias, ReLU, beta, two k blocks
      check({ta, tb, 50, 90, 40, 0, 0, 3, 1.0f, 0.0f, false, false, true});  // ReLU's gradient mask
      check({ta, tb, 20, 40, 1030, 0, 0, 0, -0.5f, 0.5f, true, true, true});  // everything, three k blocks
      check({ta, tb, 6, 7, 0, 0, 0, 0, 1.0f, 0.5f, true, false, true});  // k = 0: beta C + bias, masked
      check({ta, tb, 77, 70, 300, 3, 5, 2, 0.5f, 1.0f});                  // strided, accumulate into C
    }
  // What a G2P training step runs: x W^T (+ bias, ReLU), dY W, dY^T X.
  check({false, true, 600, 512, 256, 0, 0, 0, 1.0f, 0.0f, true, true});
  check({false, false, 600, 256, 512});
  check({true, false, 256, 512, 600});
}

// Blocks of a product give the bits of the whole: GemmPacked.BlocksOfAProductGiveTheSameBitsAsTheWhole
// runs for both kernels.

// Operands that end right before an unreadable page: no load of the packing routines reaches
// past the last element of A, B or the mask (a fault would end the test), for every
// transpose and tail.
TEST(GemmAmx, ReadsNothingPastItsOperands) {
  if (!gemm_amx_available()) GTEST_SKIP() << "no AMX-BF16 on this CPU (or no tile permission)";
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  // floats placed so that the last one ends where the guard page begins
  struct Guarded {
    char* base = nullptr;
    size_t bytes = 0;
    float* at = nullptr;
    Guarded(size_t n, size_t page) {
      const size_t data = (n * sizeof(float) + page - 1) / page * page;
      bytes = data + page;
      base = static_cast<char*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      EXPECT_NE(base, MAP_FAILED);
      mprotect(base + data, page, PROT_NONE);
      at = reinterpret_cast<float*>(base + data) - n;
    }
    ~Guarded() { munmap(base, bytes); }
  };
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int64_t m : {1, 17, 33})
        for (int64_t n : {1, 18, 47})
          for (int64_t k : {1, 31, 33, 515}) {
            const int64_t lda = ta ? m : k, ldb = tb ? k : n;
            Guarded a(m * k, page), b(n * k, page), mask(m * n, page);
            const std::vector<float> av = uniform_floats(m * k, 1), bv = uniform_floats(n * k, 2),
                                     mv = uniform_floats(m * n, 3);
            std::copy(av.begin(), av.end(), a.at);
            std::copy(bv.begin(), bv.end(), b.at);
            std::copy(mv.begin(), mv.end(), mask.at);
            std::vector<float> c(m * n);
            ASSERT_TRUE(gemm_amx_bf16(ta, tb, m, n, k, 1.0f, a.at, lda, b.at, ldb, 0.0f, c.data(), n,
                                      {nullptr, false, mask.at}));
          }
}

// alpha == 0 or k == 0 reads neither A nor B: NaN there does not reach C.
TEST(GemmAmx, AlphaOrKZeroScalesCOnly) {
  if (!gemm_amx_available()) GTEST_SKIP() << "no AMX-BF16 on this CPU (or no tile permission)";
  const std::vector<float> nan(4 * 20, std::numeric_limits<float>::quiet_NaN()), bias = {1, -10, 0};
  std::vector<float> c = {1, 2, 3, 4, 5, 6};
  gemm_amx_bf16(false, true, 2, 3, 20, 0.0f, nan.data(), 20, nan.data(), 20, 0.5f, c.data(), 3);
  EXPECT_EQ(c, (std::vector<float>{0.5f, 1, 1.5f, 2, 2.5f, 3}));
  gemm_amx_bf16(true, false, 2, 3, 0, 1.0f, nan.data(), 2, nan.data(), 3, 2.0f, c.data(), 3, {bias.data(), true});
  EXPECT_EQ(c, (std::vector<float>{2, 0, 3, 5, 0, 6}));
}

}  // namespace
}  // namespace heed::kernels::cpu

namespace heed::kernels::cpu {
namespace {

// set_matmul_precision(kBf16) sends f32 products through gemm_amx_bf16 (the same bits, tiled
// or not), leaves few-row products (decoding) and f64 products alone, and kF32 restores f32.
TEST(MatmulPrecision, Bf16RoutesProductsToAmx) {
  if (!bf16_matmul_available()) GTEST_SKIP() << "no AMX-BF16 on this CPU (or no tile permission)";
  const MatmulPrecision saved = matmul_precision();
  const auto run = [](MatmulPrecision precision, int64_t m, int64_t n, int64_t k) {
    const std::vector<float> a = uniform_floats(m * k, 7), b = uniform_floats(n * k, 8), bias = uniform_floats(n, 9);
    const GemmParams p{.trans_a = false, .trans_b = true, .m = m, .n = n, .k = k, .lda = k, .ldb = k, .ldc = n};
    std::vector<float> c(m * n), direct(m * n);
    set_matmul_precision(precision);
    gemm(p, a.data(), b.data(), c.data(), {bias.data(), true});
    if (precision == MatmulPrecision::kBf16)
      gemm_amx_bf16(false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, direct.data(), n, {bias.data(), true});
    else
      gemm_packed(false, true, m, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, direct.data(), n, {bias.data(), true});
    return std::make_pair(c, direct);  // (through gemm(), directly)
  };
  // Large enough for several tiles on a multi-core machine (gemm_tiling).
  auto [bf16_c, amx_c] = run(MatmulPrecision::kBf16, 700, 300, 270);
  EXPECT_EQ(bf16_c, amx_c);
  auto [f32_c, packed_c] = run(MatmulPrecision::kF32, 700, 300, 270);
  if (gemm_packed_available()) EXPECT_EQ(f32_c, packed_c);
  EXPECT_NE(bf16_c, f32_c);  // the precision really changed
  // A few-row product (a decoding step) is f32 under kBf16 too.
  EXPECT_EQ(run(MatmulPrecision::kBf16, 8, 300, 270).first, run(MatmulPrecision::kF32, 8, 300, 270).first);
  set_matmul_precision(saved);
}

}  // namespace
}  // namespace heed::kernels::cpu
