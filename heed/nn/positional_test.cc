// Position encodings: the sinusoidal table's values, learned positions' gradient, and rotary
// embeddings against a composed reference, their gradient, and the relative-position property.
#include "heed/nn/positional.h"

#include <cmath>

#include <gtest/gtest.h>

#include "heed/heed.h"
#include "heed/testing/numerics.h"

namespace heed::nn {
namespace {

using testing::all_close;
using testing::kElementwise;

TEST(Positional, SinusoidalTableValues) {
  Tensor t = sinusoidal_table(50, 8, DType::kF64);
  ASSERT_EQ(t.shape(), (Shape{50, 8}));
  std::vector<double> v = t.to_vector<double>();
  for (int64_t p : {0, 1, 17, 49})
    for (int64_t i = 0; i < 4; ++i) {
      double a = p / std::pow(10000.0, 2.0 * i / 8.0);
      EXPECT_NEAR(v[p * 8 + 2 * i], std::sin(a), 1e-15);
      EXPECT_NEAR(v[p * 8 + 2 * i + 1], std::cos(a), 1e-15);
    }
  SinusoidalPositions pos({.max_len = 50, .width = 8});
  Tensor x = Tensor::randn({2, 5, 8}, 1);
  Tensor want = add(x, sinusoidal_table(50, 8).raw_slice(0, 3, 8));
  EXPECT_TRUE(all_close(pos.forward(x, 3), want, kElementwise));
  EXPECT_EQ(pos.parameter_count(), 0);
  EXPECT_THROW(pos.forward(x, 46), Error);
  EXPECT_THROW(pos.forward(Tensor::randn({2, 5, 6}, 1)), Error);
}

TEST(Positional, LearnedPositionsGradient) {
  LearnedPositions pos({.max_len = 10, .width = 4, .seed = 3});
  ASSERT_EQ(pos.named_parameters().front().first, "weight");
  Tensor x = Tensor::randn({3, 4, 4}, 2);
  sum(pos.forward(x, 2)).backward();
  // Rows 2..5 are used by each of the 3 batch items; others get zero gradient.
  std::vector<float> g = pos.weight().grad().to_vector<float>();
  for (int64_t r = 0; r < 10; ++r)
    for (int64_t c = 0; c < 4; ++c) EXPECT_EQ(g[r * 4 + c], (r >= 2 && r < 6) ? 3.0f : 0.0f) << r;
}

// out = x cos + rotate_half(x) sin, built from primitive ops.
Tensor rotary_reference(const Tensor& x, int64_t offset, double base) {
  const int64_t t_len = x.size(-2), d = x.size(-1), half = d / 2;
  std::vector<double> c(t_len * d), s(t_len * d);
  for (int64_t t = 0; t < t_len; ++t)
    for (int64_t i = 0; i < d; ++i) {
      double a = (offset + t) * std::pow(base, -2.0 * (i % half) / d);
      c[t * d + i] = std::cos(a);
      s[t * d + i] = std::sin(a);
    }
  Tensor ct = Tensor::from_vector(c, {t_len, d}).to(x.dtype());
  Tensor st = Tensor::from_vector(s, {t_len, d}).to(x.dtype());
  Tensor x1 = slice(x, -1, 0, half), x2 = slice(x, -1, half, d);
  Tensor rot = concat({neg(x2), x1}, -1);
  return add(mul(x, ct), mul(rot, st));
}

TEST(Positional, RotaryMatchesComposedReference) {
  Tensor x = Tensor::randn({2, 3, 5, 8}, 4, DType::kF64);
  EXPECT_TRUE(all_close(apply_rotary(x, {.offset = 7}), rotary_reference(x, 7, 10000.0), {1e-12, 1e-12}));
  Tensor xf = Tensor::randn({2, 3, 5, 6}, 5).raw_transpose(1, 2);  // non-contiguous [2, 5, 3, 6]
  EXPECT_TRUE(all_close(apply_rotary(xf, {.base = 500.0, .offset = 2}), rotary_reference(xf, 2, 500.0),
                        kElementwise));
  // The inverse rotation undoes it.
  EXPECT_TRUE(all_close(apply_rotary(apply_rotary(x, {.offset = 3}), {.offset = 3, .inverse = true}), x,
                        {1e-12, 1e-12}));
  EXPECT_THROW(apply_rotary(Tensor::randn({2, 5}, 1).raw_slice(1, 0, 3)), Error);
}

TEST(Positional, RotaryGradcheck) {
  Tensor x = testing::rand_param({2, 4, 6}, 6);
  EXPECT_TRUE(testing::gradcheck([](const std::vector<Tensor>& in) { return apply_rotary(in[0], {.offset = 5}); },
                                 {x}));
}

TEST(Positional, RotaryScoresDependOnRelativePosition) {
  // q at position m, k at position n: q.k depends only on m - n.
  Tensor q = Tensor::randn({1, 8}, 8, DType::kF64), k = Tensor::randn({1, 8}, 9, DType::kF64);
  auto score = [&](int64_t m, int64_t n) {
    return sum(mul(apply_rotary(q, {.offset = m}), apply_rotary(k, {.offset = n}))).item();
  };
  EXPECT_NEAR(score(5, 2), score(13, 10), 1e-10);
  EXPECT_NEAR(score(0, 4), score(20, 24), 1e-10);
  EXPECT_GT(std::abs(score(5, 2) - score(5, 4)), 1e-3);
}

}  // namespace
}  // namespace heed::nn
