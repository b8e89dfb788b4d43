// Autograd: accumulation, shared subgraphs, no-grad scopes, detach, backward twice.
#include <gtest/gtest.h>

#include "heed/heed.h"
#include "heed/testing/numerics.h"

namespace heed {
namespace {

TEST(Autograd, ChainAndAccumulation) {
  Tensor x = Tensor::from_vector<double>({1, 2, 3}, {3});
  x.requires_grad_();
  // y = sum(x * x + 3x): dy/dx = 2x + 3
  Tensor y = sum(add(mul(x, x), mul(x, 3.0)));
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{5, 7, 9}));
  // A second, separate graph accumulates into .grad.
  sum(x).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{6, 8, 10}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, DiamondGraphSumsBothPaths) {
  Tensor x = Tensor::from_vector<double>({2}, {1});
  x.requires_grad_();
  Tensor a = mul(x, 3.0);
  Tensor y = sum(mul(a, a));  // 9 x^2 -> 18 x
  y.backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 36.0);
}

TEST(Autograd, NoGradAndDetach) {
  Tensor x = Tensor::ones({2}, DType::kF64);
  x.requires_grad_();
  {
    autograd::NoGradGuard guard;
    EXPECT_FALSE(mul(x, 2.0).requires_grad());
  }
  EXPECT_TRUE(mul(x, 2.0).requires_grad());
  Tensor d = mul(x, 2.0).detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_THROW(sum(d).backward(), Error);
}

TEST(Autograd, BackwardTwiceThroughFreedGraphIsAnError) {
  Tensor x = Tensor::ones({2}, DType::kF64);
  x.requires_grad_();
  Tensor y = sum(exp(x));
  y.backward();
  try {
    y.backward();
    FAIL() << "expected heed::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("retain_graph"), std::string::npos) << e.what();
  }
  Tensor z = sum(exp(x));
  autograd::backward(z, Tensor(), {.retain_graph = true});
  EXPECT_NO_THROW(autograd::backward(z));
}

TEST(Autograd, BackwardNeedsScalarOrSeed) {
  Tensor x = Tensor::ones({2}, DType::kF64);
  x.requires_grad_();
  Tensor y = mul(x, 2.0);
  EXPECT_THROW(y.backward(), Error);
  autograd::backward(y, Tensor::from_vector<double>({1, 10}, {2}));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 20}));
}

TEST(Autograd, OnlyLeavesCanBeMarked) {
  Tensor x = Tensor::ones({2}, DType::kF64);
  x.requires_grad_();
  Tensor y = mul(x, 2.0);
  EXPECT_THROW(y.requires_grad_(), Error);
  EXPECT_THROW(Tensor::zeros({2}, DType::kI64).requires_grad_(), Error);
}

}  // namespace
}  // namespace heed
