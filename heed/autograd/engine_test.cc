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

// A leaf may keep the engine's gradient buffer as its .grad without a copy only when
// nothing else sees it: two leaves fed the same gradient (add's backward passes g to both),
// a user's grad_root and a slice of a larger gradient must each get their own memory, so an
// in-place change of one .grad (clipping) leaves the others alone.
TEST(Autograd, LeafGradientsNeverShareMemory) {
  Tensor a = Tensor::from_vector<double>({1, 2}, {2}).requires_grad_();
  Tensor b = Tensor::from_vector<double>({3, 4}, {2}).requires_grad_();
  Tensor seed = Tensor::from_vector<double>({10, 20}, {2});
  autograd::backward(add(a, b), seed);
  EXPECT_NE(a.grad().raw_data(), b.grad().raw_data());
  EXPECT_NE(a.grad().raw_data(), seed.raw_data());
  EXPECT_NE(b.grad().raw_data(), seed.raw_data());
  a.grad().data<double>()[0] = -1;
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{10, 20}));
  EXPECT_EQ(seed.to_vector<double>(), (std::vector<double>{10, 20}));

  // Two slices of one leaf's product: each gradient is a view into one buffer.
  Tensor x = Tensor::from_vector<double>({1, 2, 3, 4}, {4}).requires_grad_();
  Tensor y = Tensor::from_vector<double>({5, 6}, {2}).requires_grad_();
  Tensor z = mul(x, 2.0);  // fresh gradient buffer for x
  Tensor w = add(slice(z, 0, 0, 2), y);
  sum(w).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 2, 0, 0}));
  EXPECT_EQ(y.grad().to_vector<double>(), (std::vector<double>{1, 1}));
  y.grad().data<double>()[0] = 7;
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 2, 0, 0}));
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
