// cross_entropy against the double reference for every reduction, label smoothing and
// ignore_index (f32 and f64, non-contiguous logits), its gradient, the all-ignored case,
// stability for large logits, gradchecks, and the fused op against log_softmax composed.
#include "heed/ops/loss.h"

#include <gtest/gtest.h>

#include <cmath>

#include "heed/heed.h"
#include "heed/kernels/ref/ops_ref.h"
#include "heed/testing/numerics.h"

namespace heed {
namespace {

using ref::Layout;
using testing::all_close;
using testing::gradcheck;
using testing::kReduction;

// Targets in [0, V), with about a quarter set to ignore_index when `ignore` is true.
Tensor random_targets(const Shape& shape, int64_t v, uint64_t seed, bool ignore, int64_t ignore_index = -100) {
  std::vector<int64_t> t;
  std::vector<float> u = Tensor::uniform(shape, 0, 1, seed).to_vector<float>();
  std::vector<float> w = Tensor::uniform(shape, 0, 1, seed + 1).to_vector<float>();
  for (size_t i = 0; i < u.size(); ++i)
    t.push_back(ignore && w[i] < 0.25f ? ignore_index : std::min<int64_t>(static_cast<int64_t>(u[i] * v), v - 1));
  return Tensor::from_vector(t, shape);
}

// The reduced reference: per-target losses from ref::cross_entropy, summed or averaged over
// non-ignored targets; and the per-row gradient scale of that reduction.
struct Expected {
  Tensor loss, grad;
};
Expected expected(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& o, const Tensor& g) {
  Tensor per = ref::cross_entropy(logits, targets, o.label_smoothing, o.ignore_index);
  std::vector<double> pv = per.to_vector<double>(), tv = targets.to_vector<double>();
  double total = 0, count = 0;
  for (size_t r = 0; r < pv.size(); ++r) {
    total += pv[r];
    count += tv[r] != o.ignore_index;
  }
  std::vector<double> scale;
  Tensor loss;
  if (o.reduction == Reduction::kNone) {
    loss = per;
    scale = g.to_vector<double>();
  } else {
    const double k = o.reduction == Reduction::kMean ? (count > 0 ? 1 / count : 0.0) : 1.0;
    loss = ref::make({total * k}, {});
    scale.assign(pv.size(), g.item() * k);
  }
  return {loss, ref::cross_entropy_grad(logits, targets, o.label_smoothing, o.ignore_index, scale)};
}

TEST(CrossEntropy, ForwardAndBackwardMatchReference) {
  uint64_t seed = 1;
  const std::vector<std::pair<Shape, int64_t>> shapes = {{{1}, 1}, {{7}, 33}, {{33}, 257}, {{2, 7}, 17}, {{}, 7}};
  for (const auto& [batch, v] : shapes)
    for (Reduction reduction : {Reduction::kMean, Reduction::kSum, Reduction::kNone})
      for (double eps : {0.0, 0.1})
        for (bool ignore : {false, true})
          for (Layout layout : {Layout::kContiguous, Layout::kTransposed, Layout::kStrided})
            for (DType dtype : {DType::kF32, DType::kF64}) {
              Shape shape = batch;
              shape.push_back(v);
              Tensor logits = ref::make_input(shape, layout, ++seed, dtype, -6, 6);
              logits.requires_grad_();
              const int64_t ignore_index = seed % 2 ? -100 : v - 1;  // ignore_index may be a real class
              Tensor targets = random_targets(batch, v, ++seed, ignore, ignore_index);
              const CrossEntropyOptions o{.label_smoothing = eps, .ignore_index = ignore_index, .reduction = reduction};
              Tensor loss = cross_entropy(logits, targets, o);
              Tensor g = reduction == Reduction::kNone ? ref::make_input(batch, Layout::kStrided, ++seed, dtype)
                                                       : Tensor::scalar(1.7, dtype);
              Expected e = expected(logits, targets, o, g);
              const std::string what = logits.str() + " " + ref::layout_name(layout) + " reduction " +
                                       std::to_string(static_cast<int>(reduction)) + " eps " + std::to_string(eps) +
                                       (ignore ? " with ignored" : "");
              EXPECT_EQ(loss.dtype(), dtype);
              EXPECT_TRUE(all_close(loss, e.loss, kReduction)) << what;
              autograd::backward(loss, g);
              EXPECT_TRUE(all_close(logits.grad(), e.grad, kReduction)) << what;
            }
}

TEST(CrossEntropy, AllIgnoredGivesZeroLossAndZeroGradient) {
  Tensor logits = testing::rand_param({4, 5}, 1, DType::kF32);
  Tensor targets = Tensor::full({4}, -100, DType::kI64);
  for (double eps : {0.0, 0.2}) {
    logits.zero_grad();
    Tensor loss = cross_entropy(logits, targets, {.label_smoothing = eps});
    EXPECT_EQ(loss.item(), 0.0);
    loss.backward();
    for (float v : logits.grad().to_vector<float>()) EXPECT_EQ(v, 0.0f);
  }
  EXPECT_EQ(cross_entropy(logits, targets, {.reduction = Reduction::kSum}).item(), 0.0);
}

TEST(CrossEntropy, StableForLargeLogits) {
  Tensor logits = add(mul(Tensor::randn({7, 33}, 2), 30.0), 1e4);
  logits.requires_grad_();
  Tensor targets = random_targets({7}, 33, 3, false);
  const CrossEntropyOptions o{.label_smoothing = 0.1};
  Tensor loss = cross_entropy(logits, targets, o);
  Expected e = expected(logits, targets, o, Tensor::scalar(1.0));
  EXPECT_TRUE(all_close(loss, e.loss, kReduction));
  loss.backward();
  EXPECT_TRUE(all_close(logits.grad(), e.grad, kReduction));
}

TEST(CrossEntropy, HandComputedLabelSmoothingExample) {
  // PyTorch semantics for cross_entropy([[1, 2, 3], [1, 0, -1]], [2, 0], label_smoothing=0.2), by hand:
  // log p row 0 = [-2.4076, -1.4076, -0.4076],
  // row 1 = [-0.4076, -1.4076, -2.4076]; loss = 0.8 * 0.4076 + 0.2 * 1.4076 = 0.6076.
  Tensor logits = Tensor::from_vector<double>({1, 2, 3, 1, 0, -1}, {2, 3});
  Tensor targets = Tensor::from_vector<int64_t>({2, 0}, {2});
  const double lse = std::log(std::exp(0.0) + std::exp(-1.0) + std::exp(-2.0));  // 0.40760596
  const double expected = 0.8 * lse + 0.2 * (lse + 1.0);
  EXPECT_NEAR(cross_entropy(logits, targets, {.label_smoothing = 0.2}).item(), expected, 1e-12);
}

TEST(CrossEntropy, Gradients) {
  Tensor targets = Tensor::from_vector<int64_t>({2, -100, 0, 4, 1, 4}, {2, 3});
  for (Reduction reduction : {Reduction::kMean, Reduction::kSum, Reduction::kNone})
    for (double eps : {0.0, 0.3}) {
      const CrossEntropyOptions o{.label_smoothing = eps, .reduction = reduction};
      EXPECT_TRUE(gradcheck([targets, o](const std::vector<Tensor>& x) { return cross_entropy(x[0], targets, o); },
                            {testing::rand_param({2, 3, 5}, 1)}))
          << static_cast<int>(reduction) << " " << eps;
    }
  // Logits reached through a view.
  EXPECT_TRUE(gradcheck(
      [targets](const std::vector<Tensor>& x) { return cross_entropy(permute(x[0], {1, 2, 0}), targets); },
      {testing::rand_param({5, 2, 3}, 2)}));
}

TEST(CrossEntropy, FusedMatchesComposed) {
  Tensor x1 = testing::rand_param({6, 9}, 3), x2 = testing::rand_param({6, 9}, 3);
  std::vector<int64_t> t = {1, 8, 0, 3, 3, 5};
  const double eps = 0.15;
  Tensor fused = cross_entropy(x1, Tensor::from_vector(t, {6}), {.label_smoothing = eps});
  std::vector<double> target_dist(6 * 9, eps / 9);
  for (int r = 0; r < 6; ++r) target_dist[r * 9 + t[r]] += 1 - eps;
  Tensor q = Tensor::from_vector(target_dist, {6, 9});
  Tensor composed = mean(neg(sum(mul(q, log_softmax(x2, -1)), {-1})));
  EXPECT_TRUE(all_close(fused, composed, {1e-14, 1e-13}));
  fused.backward();
  composed.backward();
  EXPECT_TRUE(all_close(x1.grad(), x2.grad(), {1e-14, 1e-12}));
}

}  // namespace
}  // namespace heed
