// matmul / linear against a naive double reference, with broadcasting, transposed and
// non-contiguous operands, and finite-difference gradients.
#include "heed/ops/matmul.h"

#include <gtest/gtest.h>

#include <cmath>

#include "heed/heed.h"
#include "heed/kernels/cpu/gemm.h"
#include "heed/kernels/ref/ops_ref.h"
#include "heed/testing/numerics.h"

namespace heed {
namespace {

using testing::all_close;
using testing::gradcheck;
using testing::kReduction;

// Naive reference: [..., M, K] @ [..., K, N] with broadcast batch, double accumulation.
Tensor matmul_ref(const Tensor& a, const Tensor& b) {
  Shape batch = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2),
                                 Shape(b.shape().begin(), b.shape().end() - 2), "ref");
  Shape sa = batch, sb = batch, so = batch;
  sa.insert(sa.end(), {a.size(-2), a.size(-1)});
  sb.insert(sb.end(), {b.size(-2), b.size(-1)});
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  so.insert(so.end(), {m, n});
  std::vector<double> va = a.raw_expand(sa).to_vector<double>(), vb = b.raw_expand(sb).to_vector<double>();
  std::vector<double> out(shape_numel(so));
  for (int64_t bi = 0; bi < shape_numel(batch); ++bi)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < k; ++p) acc += va[(bi * m + i) * k + p] * vb[(bi * k + p) * n + j];
        out[(bi * m + i) * n + j] = acc;
      }
  return Tensor::from_vector(out, so);
}

TEST(Matmul, MatchesReferenceOnAwkwardSizes) {
  for (int64_t m : {1, 7, 33, 257})
    for (int64_t k : {1, 7, 33})
      for (int64_t n : {1, 7, 257}) {
        Tensor a = Tensor::randn({m, k}, m * 100 + k), b = Tensor::randn({k, n}, k * 100 + n);
        EXPECT_TRUE(all_close(matmul(a, b), matmul_ref(a, b), kReduction)) << m << "x" << k << "x" << n;
      }
}

TEST(Matmul, BatchedBroadcastAndViews) {
  Tensor a = Tensor::randn({2, 3, 7, 5}, 1), b = Tensor::randn({3, 5, 9}, 2);
  EXPECT_TRUE(all_close(matmul(a, b), matmul_ref(a, b), kReduction));
  Tensor w = Tensor::randn({5, 9}, 3);  // shared weight: folded into one GEMM
  EXPECT_TRUE(all_close(matmul(a, w), matmul_ref(a, w), kReduction));
  // Transposed and strided operands (non-contiguous views).
  Tensor at = Tensor::randn({2, 5, 7}, 4).raw_transpose(1, 2);
  Tensor bs = Tensor::randn({2, 5, 18}, 5).raw_slice(2, 0, 18, 2);
  EXPECT_TRUE(all_close(matmul(at, bs), matmul_ref(at, bs), kReduction));
  Tensor perm = Tensor::randn({7, 2, 5}, 6).raw_permute({1, 0, 2});
  EXPECT_TRUE(all_close(matmul(perm, w), matmul_ref(perm, w), kReduction));
}

TEST(Matmul, OneDimensionalOperands) {
  Tensor v = Tensor::randn({5}, 1), m = Tensor::randn({5, 3}, 2);
  EXPECT_EQ(matmul(v, m).shape(), (Shape{3}));
  EXPECT_TRUE(all_close(matmul(v, m), reshape(matmul_ref(v.raw_reshape({1, 5}), m), {3}), kReduction));
}

TEST(Matmul, Gradients) {
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
                        {testing::rand_param({2, 3, 4}, 1), testing::rand_param({4, 5}, 2)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
                        {testing::rand_param({2, 1, 3, 4}, 3), testing::rand_param({3, 4, 2}, 4)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(transpose(x[0], 0, 1), x[1]); },
                        {testing::rand_param({4, 3}, 5), testing::rand_param({4, 2}, 6)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); },
                        {testing::rand_param({2, 3, 4}, 7), testing::rand_param({5, 4}, 8),
                         testing::rand_param({5}, 9)}));
}

TEST(Matmul, ErrorsNameShapes) {
  try {
    matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("f32[2, 3] @ f32[4, 5]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(matmul(Tensor::zeros({2, 3}), Tensor::zeros({3, 2}, DType::kF64)), Error);
  EXPECT_THROW(matmul(Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 2})), Error);
  EXPECT_THROW(linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})), Error);
}


// Against the shared reference (heed/kernels/ref): every operand layout, batch broadcasting
// through stride-0 views, f32 and f64, and linear with and without bias.
TEST(Matmul, MatchesSharedReferenceOnEveryLayout) {
  uint64_t seed = 500;
  for (ref::Layout la : ref::kAllLayouts)
    for (ref::Layout lb : ref::kAllLayouts)
      for (DType dtype : {DType::kF32, DType::kF64}) {
        Tensor a = ref::make_input({3, 33, 17}, la, ++seed, dtype), b = ref::make_input({3, 17, 7}, lb, ++seed, dtype);
        EXPECT_TRUE(all_close(matmul(a, b), ref::matmul(a, b), kReduction))
            << ref::layout_name(la) << " @ " << ref::layout_name(lb) << " " << dtype_name(dtype);
        Tensor w = ref::make_input({17, 257}, lb, ++seed, dtype);  // shared weight, folded into one GEMM
        EXPECT_TRUE(all_close(matmul(a, w), ref::matmul(a, w), kReduction)) << ref::layout_name(la);
        Tensor v = ref::make_input({17}, lb, ++seed, dtype);
        EXPECT_TRUE(all_close(matmul(a, v), ref::matmul(a, v), kReduction));
      }
  Tensor x = ref::make_input({2, 7, 33}, ref::Layout::kTransposed, 1);
  Tensor w = ref::make_input({257, 33}, ref::Layout::kStrided, 2), bias = ref::make_input({257}, ref::Layout::kStrided, 3);
  EXPECT_TRUE(all_close(linear(x, w, bias), ref::linear(x, w, bias), kReduction));
  EXPECT_TRUE(all_close(linear(x, w), ref::linear(x, w, Tensor()), kReduction));
}

TEST(Matmul, BackwardMatchesReferenceInF32) {
  // f32 gradients against double: grad_a = g @ b^T, grad_b = a^T @ g (summed over broadcast batch).
  Tensor a = ref::make_input({2, 33, 17}, ref::Layout::kTransposed, 1), b = ref::make_input({17, 7}, ref::Layout::kStrided, 2);
  a = a.clone_data();
  b = b.clone_data();
  a.requires_grad_();
  b.requires_grad_();
  Tensor g = ref::make_input({2, 33, 7}, ref::Layout::kTransposed, 3);
  autograd::backward(matmul(a, b), g);
  EXPECT_TRUE(all_close(a.grad(), ref::matmul(g, ref::permute(b, {1, 0})), kReduction));
  EXPECT_TRUE(all_close(b.grad(), ref::sum(ref::matmul(ref::permute(a, {0, 2, 1}), g), {0}, false), kReduction));
}

TEST(Matmul, GradientsWithBatchBroadcastAndVectors) {
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
                        {testing::rand_param({3, 2, 4}, 11), testing::rand_param({1, 4, 3}, 12)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
                        {testing::rand_param({4}, 13), testing::rand_param({2, 4, 3}, 14)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
                        {testing::rand_param({2, 3, 4}, 15), testing::rand_param({4}, 16)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], expand(x[1], {2, 4, 3})); },
                        {testing::rand_param({2, 5, 4}, 17), testing::rand_param({4, 3}, 18)}));
}

// Products large enough to be split into row, column and 2-D tiles (kernels/cpu/gemm.cc),
// with every combination of transposed operands, batched, in f32 and f64. A is scaled by
// 1/sqrt(K) so that results are O(1), as in a network, and the f32 tolerance applies.
TEST(Matmul, TiledProductsMatchReference) {
  struct Case {
    int64_t m, k, n;
  };
  uint64_t seed = 700;
  for (const Case& c : {Case{300, 700, 130}, Case{5, 600, 3000}, Case{300, 200, 1100}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (DType dtype : {DType::kF32, DType::kF64}) {
          if (dtype == DType::kF64 && ta != tb) continue;  // f64 shares the tiling code; keep the test fast
          const auto tiling = kernels::cpu::gemm_tiling(c.m, c.n, c.k);
          ASSERT_TRUE(tiling.rows < c.m || tiling.cols < c.n) << "not tiled: " << c.m << "x" << c.k << "x" << c.n;
          if (c.n == 1100) ASSERT_TRUE(tiling.rows < c.m && tiling.cols < c.n) << "expected 2-D tiles";
          const double scale = 1 / std::sqrt(static_cast<double>(c.k));
          Tensor a = ta ? mul(Tensor::randn({c.k, c.m}, ++seed, dtype), scale).raw_transpose(0, 1)
                        : mul(Tensor::randn({c.m, c.k}, ++seed, dtype), scale);
          Tensor b = tb ? Tensor::randn({c.n, c.k}, ++seed, dtype).raw_transpose(0, 1)
                        : Tensor::randn({c.k, c.n}, ++seed, dtype);
          EXPECT_TRUE(all_close(matmul(a, b), ref::matmul(a, b), kReduction))
              << c.m << "x" << c.k << "x" << c.n << " trans_a " << ta << " trans_b " << tb << " " << dtype_name(dtype);
        }
  ASSERT_LT(kernels::cpu::gemm_tiling(300, 300, 200, 3).rows, 300);  // batched items are tiled too
  Tensor a = mul(Tensor::randn({3, 300, 200}, 1), 0.07), b = Tensor::randn({3, 300, 200}, 2).raw_transpose(1, 2);
  EXPECT_TRUE(all_close(matmul(a, b), ref::matmul(a, b), kReduction));
}

}  // namespace
}  // namespace heed
