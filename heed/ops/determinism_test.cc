// Results must not depend on the thread count: a mixed forward + backward workload run with
// 1, 2 and 3 OpenMP threads must give bitwise identical tensors.
#include <gtest/gtest.h>
#include <omp.h>

#include "heed/heed.h"
#include "heed/testing/numerics.h"

namespace heed {
namespace {

using testing::bitwise_equal;

// Sizes are above the kernels' parallel grain, so more than one thread really takes part.
std::vector<std::pair<std::string, Tensor>> workload() {
  std::vector<std::pair<std::string, Tensor>> out;
  // GEMMs: awkward, single large (BLAS threads it), batched (one item per thread), folded batch.
  out.emplace_back("matmul 257x129x65", matmul(Tensor::randn({257, 129}, 1), Tensor::randn({129, 65}, 2)));
  out.emplace_back("matmul 600x700x500", matmul(Tensor::randn({600, 700}, 3), Tensor::randn({700, 500}, 4)));
  out.emplace_back("matmul 1x700x500", matmul(Tensor::randn({1, 700}, 3), Tensor::randn({700, 500}, 4)));
  out.emplace_back("matmul batched", matmul(Tensor::randn({8, 64, 96}, 5), Tensor::randn({8, 96, 80}, 6)));
  out.emplace_back("matmul transposed",
                   matmul(Tensor::randn({700, 600}, 7).raw_transpose(0, 1), Tensor::randn({700, 300}, 8)));
  Tensor x = Tensor::randn({512, 300}, 9);
  out.emplace_back("softmax", softmax(x, -1));
  out.emplace_back("softmax dim 0", softmax(x, 0));
  out.emplace_back("log_softmax", log_softmax(x, -1));
  out.emplace_back("sum", sum(x, {0}));
  out.emplace_back("sum all", sum(x));
  out.emplace_back("mean", mean(x, {1}, true));
  out.emplace_back("gelu", gelu(x));
  out.emplace_back("add broadcast", add(x, Tensor::randn({300}, 10)));
  out.emplace_back("dropout", dropout(x, {.p = 0.2, .seed = 11}));

  // A small model, forward and backward: embedding -> layer_norm -> linear -> cross_entropy.
  Tensor table = Tensor::randn({300, 256}, 12);
  table.requires_grad_();
  Tensor ln_w = Tensor::uniform({256}, 0.5, 1.5, 13), ln_b = Tensor::randn({256}, 14);
  ln_w.requires_grad_();
  ln_b.requires_grad_();
  Tensor proj = mul(Tensor::randn({1000, 256}, 15), 0.05);
  proj.requires_grad_();
  Tensor tokens = Tensor::empty({4, 128}, DType::kI64), targets = Tensor::empty({4, 128}, DType::kI64);
  for (int64_t i = 0; i < 512; ++i) {
    tokens.data<int64_t>()[i] = (i * 37) % 300;
    targets.data<int64_t>()[i] = i % 11 == 0 ? -100 : (i * 53) % 1000;
  }
  Tensor h = embedding(table, tokens);                                    // [4, 128, 256]
  Tensor n = layer_norm(dropout(h, {.p = 0.1, .seed = 16}), 256, ln_w, ln_b);  // [4, 128, 256]
  Tensor logits = linear(n, proj);                                         // [4, 128, 1000]
  Tensor loss = cross_entropy(logits, targets, {.label_smoothing = 0.1});
  loss.backward();
  out.emplace_back("logits", logits);
  out.emplace_back("loss", loss);
  out.emplace_back("grad table", table.grad());
  out.emplace_back("grad ln weight", ln_w.grad());
  out.emplace_back("grad ln bias", ln_b.grad());
  out.emplace_back("grad proj", proj.grad());
  return out;
}

TEST(Determinism, ResultsDoNotDependOnThreadCount) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  auto one = workload();
  for (int threads : {2, 3}) {
    omp_set_num_threads(threads);
    auto many = workload();
    ASSERT_EQ(one.size(), many.size());
    for (size_t i = 0; i < one.size(); ++i)
      EXPECT_TRUE(bitwise_equal(one[i].second, many[i].second)) << one[i].first << " with " << threads << " threads";
  }
  omp_set_num_threads(saved);
}

TEST(Determinism, SameSeedSameDropoutBits) {
  Tensor x = Tensor::randn({64, 1000}, 1);
  EXPECT_TRUE(bitwise_equal(dropout(x, {.p = 0.3, .seed = 5, .stream = 2}), dropout(x, {.p = 0.3, .seed = 5, .stream = 2})));
}

}  // namespace
}  // namespace heed
