// Empty tensors through the fused ops, forward and backward: no crash, the right shapes,
// and zero (not NaN) losses.
#include <gtest/gtest.h>

#include "heed/heed.h"

namespace heed {
namespace {

TEST(EdgeCases, EmptyTensorsThroughFusedOps) {
  Tensor x = Tensor::zeros({0, 5});
  x.requires_grad_();
  Tensor w = Tensor::ones({5}), b = Tensor::zeros({5});
  w.requires_grad_();
  b.requires_grad_();
  Tensor y = add(add(sum(softmax(x, -1)), sum(log_softmax(x, 0))), sum(layer_norm(x, 5, w, b)));
  y = add(y, sum(dropout(x, {.p = 0.5, .seed = 1})));
  y = add(y, cross_entropy(x, Tensor::zeros({0}, DType::kI64)));
  EXPECT_EQ(y.item(), 0.0);
  y.backward();
  EXPECT_EQ(x.grad().shape(), (Shape{0, 5}));
  EXPECT_EQ(w.grad().to_vector<float>(), std::vector<float>(5, 0.0f));
  EXPECT_EQ(b.grad().to_vector<float>(), std::vector<float>(5, 0.0f));

  Tensor table = Tensor::randn({4, 3}, 1);
  table.requires_grad_();
  Tensor e = embedding(table, Tensor::zeros({2, 0}, DType::kI64));
  EXPECT_EQ(e.shape(), (Shape{2, 0, 3}));
  sum(e).backward();
  EXPECT_EQ(table.grad().to_vector<float>(), std::vector<float>(12, 0.0f));

  Tensor none = cross_entropy(Tensor::zeros({0, 7}), Tensor::zeros({0}, DType::kI64), {.reduction = Reduction::kNone});
  EXPECT_EQ(none.shape(), (Shape{0}));
}

TEST(EdgeCases, SingleClassAndSingleElementRows) {
  // One class: log p = 0, loss 0, gradient 0 (with or without smoothing).
  Tensor logits = Tensor::randn({3, 1}, 1);
  logits.requires_grad_();
  Tensor loss = cross_entropy(logits, Tensor::zeros({3}, DType::kI64), {.label_smoothing = 0.3});
  EXPECT_EQ(loss.item(), 0.0);
  loss.backward();
  for (float v : logits.grad().to_vector<float>()) EXPECT_EQ(v, 0.0f);
  // Softmax over a dimension of size 1 is 1 everywhere.
  for (float v : softmax(Tensor::randn({4, 1}, 2), 1).to_vector<float>()) EXPECT_EQ(v, 1.0f);
}

}  // namespace
}  // namespace heed
