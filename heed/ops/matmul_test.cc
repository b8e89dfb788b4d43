// matmul / linear against a naive double reference, with broadcasting, transposed and
// non-contiguous operands, and finite-difference gradients.
#include "heed/ops/matmul.h"

#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>

#include "heed/heed.h"
#include "heed/kernels/cpu/gemm.h"
#include "heed/kernels/cpu/gemm_packed.h"
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

// linear is one product with the bias added as it is stored, linear_relu the same with the
// ReLU applied too: both give exactly the bits of the composed ops (the same sums, then the
// same additions), in value and gradient, on either GEMM backend, across k blocks of 256.
// One exception: the weight gradient is computed as g^T x ([out, in], as stored) where the
// composed matmul computes (x^T g)^T; heed's kernel sums both in the same order (bitwise),
// OpenBLAS need not (within the GEMM tolerance).
TEST(Matmul, FusedLinearEqualsComposedOpsBitwise) {
  const kernels::cpu::GemmBackend saved = kernels::cpu::gemm_backend();
  for (auto backend : {kernels::cpu::GemmBackend::kAuto, kernels::cpu::GemmBackend::kBlas}) {
    kernels::cpu::set_gemm_backend(backend);
    for (int64_t in : {7, 256, 300})
      for (int64_t out : {1, 33, 70}) {
        uint64_t seed = static_cast<uint64_t>(in * 1000 + out);
        Tensor x = Tensor::randn({3, 29, in}, ++seed), w = Tensor::randn({out, in}, ++seed),
               b = Tensor::randn({out}, ++seed), g = Tensor::randn({3, 29, out}, ++seed);
        for (bool relu : {false, true}) {
          Tensor xs[2] = {x.clone_data(), x.clone_data()}, ws[2] = {w.clone_data(), w.clone_data()},
                 bs[2] = {b.clone_data(), b.clone_data()};
          for (int i = 0; i < 2; ++i) {
            xs[i].requires_grad_();
            ws[i].requires_grad_();
            bs[i].requires_grad_();
          }
          Tensor fused = relu ? linear_relu(xs[0], ws[0], bs[0]) : linear(xs[0], ws[0], bs[0]);
          Tensor composed = add(matmul(xs[1], transpose(ws[1], 0, 1)), bs[1]);
          if (relu) composed = heed::relu(composed);
          const std::string what = std::string(relu ? "linear_relu" : "linear") + " in=" + std::to_string(in) +
                                   " out=" + std::to_string(out) +
                                   (backend == kernels::cpu::GemmBackend::kBlas ? " blas" : " auto");
          ASSERT_TRUE(testing::bitwise_equal(fused, composed)) << what;
          sum(mul(fused, g)).backward();
          sum(mul(composed, g)).backward();
          EXPECT_TRUE(testing::bitwise_equal(xs[0].grad(), xs[1].grad())) << what << " dx";
          if (backend == kernels::cpu::GemmBackend::kAuto && kernels::cpu::gemm_packed_available())
            EXPECT_TRUE(testing::bitwise_equal(ws[0].grad(), ws[1].grad())) << what << " dW";
          else
            EXPECT_TRUE(all_close(ws[0].grad(), ws[1].grad(), kReduction)) << what << " dW";
          EXPECT_TRUE(testing::bitwise_equal(bs[0].grad(), bs[1].grad())) << what << " db";
        }
      }
  }
  kernels::cpu::set_gemm_backend(saved);
}

// The feed-forward pair as one node (ReLU's mask applied inside the hidden gradient's GEMM):
// the composed ops' bits in value and every gradient, on either backend, biases or not.
TEST(Matmul, LinearReluLinearEqualsComposedOpsBitwise) {
  const kernels::cpu::GemmBackend saved = kernels::cpu::gemm_backend();
  for (auto backend : {kernels::cpu::GemmBackend::kAuto, kernels::cpu::GemmBackend::kBlas}) {
    kernels::cpu::set_gemm_backend(backend);
    for (int64_t c : {7, 64, 300})
      for (int64_t f : {33, 1030})
        for (bool biases : {true, false}) {
          uint64_t seed = static_cast<uint64_t>(c * 10000 + f);
          const Tensor x = Tensor::randn({2, 37, c}, ++seed), w1 = Tensor::randn({f, c}, ++seed),
                       b1 = Tensor::randn({f}, ++seed), w2 = Tensor::randn({c, f}, ++seed),
                       b2 = Tensor::randn({c}, ++seed), g = Tensor::randn({2, 37, c}, ++seed);
          std::vector<Tensor> p[2];
          for (auto& ps : p) {
            for (const Tensor& t : {x, w1, b1, w2, b2}) ps.push_back(t.clone_data());
            for (Tensor& t : ps) t.requires_grad_();
          }
          const Tensor nob;
          Tensor fused = linear_relu_linear(p[0][0], p[0][1], biases ? p[0][2] : nob, p[0][3], biases ? p[0][4] : nob);
          Tensor composed = linear(linear_relu(p[1][0], p[1][1], biases ? p[1][2] : nob), p[1][3], biases ? p[1][4] : nob);
          const std::string what = "c=" + std::to_string(c) + " f=" + std::to_string(f) + (biases ? " biases" : "") +
                                   (backend == kernels::cpu::GemmBackend::kBlas ? " blas" : " auto");
          ASSERT_TRUE(testing::bitwise_equal(fused, composed)) << what;
          sum(mul(fused, g)).backward();
          sum(mul(composed, g)).backward();
          for (int i = 0; i < 5; ++i) {
            if (!biases && (i == 2 || i == 4)) continue;
            EXPECT_TRUE(testing::bitwise_equal(p[0][i].grad(), p[1][i].grad())) << what << " input " << i;
          }
        }
  }
  kernels::cpu::set_gemm_backend(saved);
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& t) { return linear_relu_linear(t[0], t[1], t[2], t[3], t[4]); },
      {testing::rand_param({2, 3, 4}, 21), testing::rand_param({6, 4}, 22), testing::rand_param({6}, 23),
       testing::rand_param({4, 6}, 24), testing::rand_param({4}, 25)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return linear_relu_linear(t[0], t[1], Tensor(), t[2], Tensor()); },
                        {testing::rand_param({5, 4}, 26), testing::rand_param({6, 4}, 27), testing::rand_param({4, 6}, 28)}));
  // Few rows (the no-pack kernel and the pass after it) with W2 stored transposed, and a
  // strided W2 (copied first): still the composed ops' bits.
  for (bool strided : {false, true}) {
    const Tensor x = Tensor::randn({9, 40}, 31), w1 = Tensor::randn({70, 40}, 32), b1 = Tensor::randn({70}, 33);
    std::vector<Tensor> p[2];
    for (auto& ps : p) {
      for (const Tensor& t : {x, w1, b1}) ps.push_back(t.clone_data());
      ps.push_back(strided ? Tensor::randn({40, 140}, 34).raw_slice(1, 0, 140, 2)      // [40, 70], strided
                           : Tensor::randn({70, 40}, 34).raw_transpose(0, 1));         // [40, 70], transposed
      ASSERT_FALSE(ps.back().is_contiguous());
      for (Tensor& t : ps) t.requires_grad_();
    }
    Tensor fused = linear_relu_linear(p[0][0], p[0][1], p[0][2], p[0][3], Tensor());
    Tensor composed = linear(linear_relu(p[1][0], p[1][1], p[1][2]), p[1][3]);
    ASSERT_TRUE(testing::bitwise_equal(fused, composed)) << "strided " << strided;
    sum(fused).backward();
    sum(composed).backward();
    for (int i = 0; i < 4; ++i)
      EXPECT_TRUE(testing::bitwise_equal(p[0][i].grad(), p[1][i].grad())) << "strided " << strided << " input " << i;
  }
}

TEST(Matmul, LinearReluGradientsAndReference) {
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return linear_relu(x[0], x[1], x[2]); },
                        {testing::rand_param({2, 3, 4}, 11), testing::rand_param({5, 4}, 12),
                         testing::rand_param({5}, 13)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return linear_relu(x[0], x[1]); },
                        {testing::rand_param({6, 3}, 14), testing::rand_param({2, 3}, 15)}));
  // f32 against the double reference: relu(x W^T + b) with a non-contiguous input.
  Tensor x = ref::make_input({2, 7, 300}, ref::Layout::kTransposed, 16);
  Tensor w = ref::make_input({257, 300}, ref::Layout::kStrided, 17), b = ref::make_input({257}, ref::Layout::kStrided, 18);
  EXPECT_TRUE(all_close(linear_relu(x, w, b), heed::relu(ref::linear(x, w, b)), kReduction));
  // No input features: the bias alone (then ReLU).
  Tensor empty_in = Tensor::zeros({4, 0}), w0 = Tensor::zeros({3, 0}), b0 = Tensor::from_vector(std::vector<float>{-1, 0, 2}, {3});
  EXPECT_TRUE(testing::bitwise_equal(linear_relu(empty_in, w0, b0),
                                     Tensor::from_vector(std::vector<float>{0, 0, 2, 0, 0, 2, 0, 0, 2, 0, 0, 2}, {4, 3})));
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

// Products large enough to be tiled on this machine go through matmul; the tile arithmetic
// (row, column and 2-D tiles, every transpose combination, batched items with offsets) is
// checked with explicit tilings, whatever the machine's processor count. A is scaled by
// 1/sqrt(K) so that results are O(1), as in a network, and the f32 tolerance applies.
TEST(Matmul, TiledProductsMatchReference) {
  struct Case {
    int64_t m, k, n;
  };
  uint64_t seed = 700;
  for (const Case& c : {Case{300, 700, 130}, Case{5, 600, 3000}, Case{300, 200, 1100}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const double scale = 1 / std::sqrt(static_cast<double>(c.k));
        Tensor a = ta ? mul(Tensor::randn({c.k, c.m}, ++seed), scale).raw_transpose(0, 1)
                      : mul(Tensor::randn({c.m, c.k}, ++seed), scale);
        Tensor b = tb ? Tensor::randn({c.n, c.k}, ++seed).raw_transpose(0, 1) : Tensor::randn({c.k, c.n}, ++seed);
        EXPECT_TRUE(all_close(matmul(a, b), ref::matmul(a, b), kReduction))
            << c.m << "x" << c.k << "x" << c.n << " trans_a " << ta << " trans_b " << tb;
      }
  // Explicit tilings over two items stored at offsets in one buffer.
  const int64_t m = 70, k = 50, n = 90;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const kernels::cpu::GemmTiling tiling : {kernels::cpu::GemmTiling{16, 96}, kernels::cpu::GemmTiling{80, 32},
                                                    kernels::cpu::GemmTiling{32, 48}, kernels::cpu::GemmTiling{80, 96}})
        for (DType dtype : {DType::kF32, DType::kF64}) {
          Tensor a = Tensor::randn({2, ta ? k : m, ta ? m : k}, ++seed, dtype);  // two items, stored as given
          Tensor b = Tensor::randn({2, tb ? n : k, tb ? k : n}, ++seed, dtype);
          Tensor c = Tensor::full({2, m, n}, 7.0, dtype);  // beta = 0 must overwrite
          const kernels::cpu::GemmParams p{.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k,
                                           .lda = ta ? m : k, .ldb = tb ? k : n, .ldc = n};
          const int64_t a_off[2] = {0, a.size(1) * a.size(2)}, b_off[2] = {0, b.size(1) * b.size(2)};
          dispatch_float(dtype, "test", [&](auto tag) {
            using T = decltype(tag);
            kernels::cpu::gemm_tiled(p, tiling, 2, a_off, b_off, m * n, a.data<T>(), b.data<T>(), c.data<T>());
          });
          Tensor av = ta ? a.raw_transpose(1, 2) : a, bv = tb ? b.raw_transpose(1, 2) : b;
          const Tensor want = ref::matmul(av, bv);
          EXPECT_TRUE(all_close(c, want, kReduction))
              << "tiles " << tiling.rows << "x" << tiling.cols << " trans_a " << ta << " trans_b " << tb;
          // The same with bias, ReLU and ReLU's gradient mask (laid out as C, items included):
          // every tile must find its own part of both (heed's kernel, or the pass after BLAS
          // for f64).
          Tensor bias = Tensor::randn({n}, ++seed, dtype), mask = Tensor::randn({2, m, n}, ++seed, dtype);
          dispatch_float(dtype, "test", [&](auto tag) {
            using T = decltype(tag);
            kernels::cpu::gemm_tiled(p, tiling, 2, a_off, b_off, m * n, a.data<T>(), b.data<T>(), c.data<T>(),
                                     {bias.data<T>(), true, mask.data<T>()});
          });
          std::vector<double> w2 = want.raw_contiguous().to_vector<double>();
          const std::vector<double> bv2 = bias.to_vector<double>(), mv = mask.to_vector<double>();
          for (size_t i = 0; i < w2.size(); ++i) {
            const double v = w2[i] + bv2[i % n];
            w2[i] = mv[i] > 0 && v > 0 ? v : 0;
          }
          EXPECT_TRUE(all_close(c, Tensor::from_vector(w2, {2, m, n}), kReduction))
              << "with epilogue: tiles " << tiling.rows << "x" << tiling.cols << " trans_a " << ta << " trans_b " << tb;
        }
}

// k == 0 takes one path for every backend and dtype: C = act(beta C + bias), A and B unread.
TEST(Matmul, GemmWithoutInnerDimensionScalesCOnly) {
  const kernels::cpu::GemmBackend saved = kernels::cpu::gemm_backend();
  for (auto backend : {kernels::cpu::GemmBackend::kAuto, kernels::cpu::GemmBackend::kBlas})
    for (DType dtype : {DType::kF32, DType::kF64}) {
      kernels::cpu::set_gemm_backend(backend);
      Tensor c = Tensor::full({2, 3}, 2.0, dtype), bias = Tensor::from_vector(std::vector<double>{-5, 0, 1}, {3}).to(dtype);
      Tensor nan = Tensor::full({4}, std::nan(""), dtype);
      const kernels::cpu::GemmParams p{.m = 2, .n = 3, .k = 0, .lda = 1, .ldb = 3, .ldc = 3, .beta = 0.5};
      dispatch_float(dtype, "test", [&](auto tag) {
        using T = decltype(tag);
        kernels::cpu::gemm(p, nan.data<T>(), nan.data<T>(), c.data<T>(), {bias.data<T>(), true});
      });
      EXPECT_TRUE(testing::bitwise_equal(c, Tensor::from_vector(std::vector<double>{0, 1, 2, 0, 1, 2}, {2, 3}).to(dtype)))
          << dtype_name(dtype) << (backend == kernels::cpu::GemmBackend::kBlas ? " blas" : " auto");
    }
  kernels::cpu::set_gemm_backend(saved);
}

TEST(Matmul, TilingDependsOnProblemAndMachineOnly) {
  using kernels::cpu::gemm_tiling;
  // Two processors: two row tiles of a square product, column tiles when rows are few, none for small ones.
  EXPECT_EQ(gemm_tiling(2048, 2048, 2048, 1, 2).rows, 1024);
  EXPECT_EQ(gemm_tiling(5, 3000, 600, 1, 2).cols, 1504);
  EXPECT_EQ(gemm_tiling(64, 64, 64, 1, 2).rows, 64);
  // Few rows and a large B (decoding a batch): column tiles, one per processor; a single row
  // (one decoding step) is not split: too little work to wake a thread for.
  EXPECT_EQ(gemm_tiling(64, 1024, 256, 1, 2).cols, 512);
  EXPECT_EQ(gemm_tiling(64, 768, 256, 1, 2).cols, 384);
  EXPECT_EQ(gemm_tiling(1, 1024, 256, 1, 2).cols, 1024);
  // Sixteen processors: more, smaller tiles; a batch with enough items is not tiled.
  EXPECT_EQ(gemm_tiling(2048, 2048, 2048, 1, 16).rows, 128);
  EXPECT_EQ(gemm_tiling(512, 512, 64, 64, 16).rows, 512);
  // Bitwise identical results with 1, 2 and 3 threads for a product that is tiled here.
  Tensor a = Tensor::randn({600, 700}, 1), b = Tensor::randn({700, 500}, 2);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  Tensor c1 = matmul(a, b);
  for (int threads : {2, 3}) {
    omp_set_num_threads(threads);
    EXPECT_TRUE(testing::bitwise_equal(c1, matmul(a, b))) << threads << " threads";
  }
  omp_set_num_threads(saved);
}

}  // namespace
}  // namespace heed
