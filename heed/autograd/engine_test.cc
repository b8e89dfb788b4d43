// Autograd: accumulation, shared subgraphs, no-grad scopes, detach, backward twice.
#include <gtest/gtest.h>

#include "heed/autograd/graph.h"
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
// nothing else sees it. Shared cases must each get their own memory, so an in-place change
// of one .grad (clipping) leaves the others alone: a user's grad_root, a gradient the
// engine passes to two leaves (add's backward), a view of a gradient still waiting for
// another node, and a slice of a larger gradient.
TEST(Autograd, LeafGradientsNeverShareMemory) {
  auto separate = [](const std::vector<Tensor>& ts) {
    for (size_t i = 0; i < ts.size(); ++i)
      for (size_t j = i + 1; j < ts.size(); ++j)
        if (ts[i].storage() == ts[j].storage()) return false;
    return true;
  };
  Tensor a = Tensor::from_vector<double>({1, 2}, {2}).requires_grad_();
  Tensor b = Tensor::from_vector<double>({3, 4}, {2}).requires_grad_();
  Tensor seed = Tensor::from_vector<double>({10, 20}, {2});
  autograd::backward(add(a, b), seed);
  EXPECT_TRUE(separate({a.grad(), b.grad(), seed}));
  a.grad().data<double>()[0] = -1;
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{10, 20}));

  // The engine's own gradient of add(a, b) goes to both leaves.
  a.zero_grad();
  b.zero_grad();
  Tensor c = Tensor::from_vector<double>({5, 6}, {2});
  sum(mul(add(a, b), c)).backward();
  EXPECT_TRUE(separate({a.grad(), b.grad()}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{5, 6}));

  // b reaches add through a reshape: its gradient is a view of the one a still waits for.
  Tensor x = Tensor::from_vector<double>({1, 2, 3, 4}, {2, 2}).requires_grad_();
  Tensor y = Tensor::from_vector<double>({1, 2, 3, 4}, {4}).requires_grad_();
  sum(mul(add(x, reshape(y, {2, 2})), Tensor::from_vector<double>({1, 2, 3, 4}, {2, 2}))).backward();
  EXPECT_TRUE(separate({x.grad(), y.grad()}));

  // Two leaves concatenated: each gradient is a slice of one buffer.
  Tensor p = Tensor::from_vector<double>({1, 2}, {2}).requires_grad_();
  Tensor q = Tensor::from_vector<double>({3, 4, 5}, {3}).requires_grad_();
  sum(mul(concat({p, q}, 0), 3.0)).backward();
  EXPECT_TRUE(separate({p.grad(), q.grad()}));
  EXPECT_EQ(p.grad().storage()->bytes(), 2 * sizeof(double));  // not the whole 5-element buffer
  EXPECT_EQ(q.grad().to_vector<double>(), (std::vector<double>{3, 3, 3}));
}

// ... and keeps it when it is the only one: the buffer a node's backward made is the .grad.
TEST(Autograd, ALeafKeepsAnUnsharedGradientWithoutACopy) {
  Tensor x = Tensor::from_vector<double>({1, 2, 3}, {3}).requires_grad_();
  const void* made = nullptr;
  Tensor out = x.detach();
  autograd::record("probe", out, {x}, [&made](const Tensor& g) {
    Tensor fresh = mul(g, 2.0);
    made = fresh.raw_data();
    return std::vector<Tensor>{fresh};
  });
  sum(out).backward();
  EXPECT_EQ(x.grad().raw_data(), made);
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 2, 2}));
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
