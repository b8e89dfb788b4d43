// Learning-rate schedules at chosen steps against their formulas, and gradient clipping.
#include "heed/train/schedule.h"

#include <cmath>
#include <numbers>

#include <gtest/gtest.h>

#include "heed/heed.h"
#include "heed/testing/numerics.h"
#include "heed/train/clip.h"

namespace heed::train {
namespace {

TEST(Schedule, WarmupInverseSqrt) {
  Schedule s({.kind = ScheduleKind::kInverseSqrt, .peak_lr = 2e-3, .warmup_steps = 100, .warmup_init_lr = 1e-7});
  EXPECT_DOUBLE_EQ(s.lr(1), 1e-7 + (2e-3 - 1e-7) / 100);
  EXPECT_DOUBLE_EQ(s.lr(50), 1e-7 + (2e-3 - 1e-7) * 0.5);
  EXPECT_DOUBLE_EQ(s.lr(100), 2e-3);
  EXPECT_DOUBLE_EQ(s.lr(400), 2e-3 * 0.5);
  EXPECT_DOUBLE_EQ(s.lr(101), 2e-3 * std::sqrt(100.0 / 101.0));
  for (int64_t t = 1; t < 1000; ++t) {
    if (t < 100) EXPECT_LT(s.lr(t), s.lr(t + 1));
    if (t >= 100) EXPECT_GT(s.lr(t), s.lr(t + 1));
  }
}

TEST(Schedule, WarmupCosine) {
  Schedule s({.kind = ScheduleKind::kCosine, .peak_lr = 1.0, .warmup_steps = 10, .total_steps = 110, .min_lr = 0.1});
  EXPECT_DOUBLE_EQ(s.lr(5), 0.5);
  EXPECT_DOUBLE_EQ(s.lr(10), 1.0);
  EXPECT_NEAR(s.lr(60), 0.1 + 0.9 * 0.5, 1e-12);
  EXPECT_NEAR(s.lr(35), 0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * 0.25)), 1e-12);
  EXPECT_DOUBLE_EQ(s.lr(110), 0.1);
  EXPECT_DOUBLE_EQ(s.lr(500), 0.1);
  Schedule c({.kind = ScheduleKind::kConstant, .peak_lr = 0.3});
  EXPECT_DOUBLE_EQ(c.lr(1), 0.3);
  EXPECT_DOUBLE_EQ(c.lr(1000), 0.3);
}

TEST(Schedule, BadOptionsAreErrors) {
  EXPECT_THROW(Schedule({.kind = ScheduleKind::kCosine, .warmup_steps = 10, .total_steps = 10}), Error);
  EXPECT_THROW(Schedule({.warmup_steps = -1}), Error);
  Schedule s({});
  EXPECT_THROW(s.lr(0), Error);
}

TEST(Clip, GlobalNormAndScaling) {
  Tensor a = Tensor::zeros({2}), b = Tensor::zeros({3}), unused = Tensor::zeros({4});
  for (Tensor* t : {&a, &b, &unused}) t->requires_grad_();
  std::vector<double> ga = {3.0, -4.0}, gb = {1.0, 2.0, -2.0};
  add(sum(mul(a, Tensor::from_vector(ga, {2}).to(DType::kF32))),
      sum(mul(b, Tensor::from_vector(gb, {3}).to(DType::kF32)))).backward();
  const double norm = std::sqrt(9.0 + 16 + 1 + 4 + 4);
  // Above the norm: nothing changes.
  EXPECT_NEAR(clip_grad_norm({a, b, unused}, 100.0), norm, 1e-6);
  EXPECT_TRUE(testing::all_close(a.grad(), Tensor::from_vector(ga, {2}), testing::kElementwise));
  // Below: every gradient scaled by max_norm / (norm + 1e-6); the new norm is max_norm.
  EXPECT_NEAR(clip_grad_norm({a, b, unused}, 2.0), norm, 1e-6);
  const double coef = 2.0 / (norm + 1e-6);
  std::vector<double> want_b = {gb[0] * coef, gb[1] * coef, gb[2] * coef};
  EXPECT_TRUE(testing::all_close(b.grad(), Tensor::from_vector(want_b, {3}), testing::kElementwise));
  EXPECT_NEAR(grad_norm({a, b}), 2.0, 1e-5);
  EXPECT_FALSE(unused.grad().defined());
  EXPECT_THROW(clip_grad_norm({a}, 0.0), Error);
}

}  // namespace
}  // namespace heed::train
