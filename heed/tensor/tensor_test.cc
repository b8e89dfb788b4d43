// Tensor: factories, views without copies, contiguous copies, dtype conversion, errors.
#include "heed/tensor/tensor.h"

#include <gtest/gtest.h>

#include "heed/tensor/random.h"

namespace heed {
namespace {

TEST(Tensor, FactoriesAndAlignment) {
  Tensor t = Tensor::zeros({3, 5});
  EXPECT_EQ(t.numel(), 15);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 64, 0u);
  for (float v : t.to_vector<float>()) EXPECT_EQ(v, 0.0f);
  Tensor a = Tensor::arange(6, DType::kF64);
  EXPECT_EQ(a.to_vector<double>(), (std::vector<double>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(Tensor::scalar(2.5).item(), 2.5);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor a = Tensor::arange(24, DType::kF32).raw_reshape({2, 3, 4});
  Tensor p = a.raw_permute({2, 0, 1});  // [4, 2, 3]
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.storage(), a.storage());
  EXPECT_FALSE(p.is_contiguous());
  // p[i, j, k] = a[j, k, i] = j*12 + k*4 + i
  std::vector<float> v = p.to_vector<float>();
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 3; ++k) EXPECT_EQ(v[(i * 2 + j) * 3 + k], j * 12 + k * 4 + i);
  Tensor s = a.raw_slice(2, 1, 4, 2);  // [2, 3, 2]: columns 1 and 3
  EXPECT_EQ(s.storage(), a.storage());
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23}));
  Tensor e = Tensor::arange(3, DType::kF32).raw_reshape({3, 1}).raw_expand({2, 3, 4});
  EXPECT_EQ(e.stride(0), 0);
  EXPECT_EQ(e.to_vector<float>()[4 * 2 + 1], 2.0f);
  Tensor u = a.raw_unsqueeze(1);
  EXPECT_EQ(u.shape(), (Shape{2, 1, 3, 4}));
  EXPECT_EQ(u.raw_squeeze(1).shape(), a.shape());
}

TEST(Tensor, ReshapeCopiesOnlyWhenNeeded) {
  Tensor a = Tensor::arange(12, DType::kF32).raw_reshape({3, 4});
  EXPECT_EQ(a.raw_reshape({2, -1}).storage(), a.storage());
  Tensor t = a.raw_transpose(0, 1);
  Tensor r = t.raw_reshape({12});
  EXPECT_NE(r.storage(), a.storage());
  EXPECT_EQ(r.to_vector<float>(), (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
}

TEST(Tensor, DtypeConversion) {
  Tensor a = Tensor::from_vector<double>({1.5, -2.25, 3}, {3});
  EXPECT_EQ(a.to(DType::kF32).to_vector<float>(), (std::vector<float>{1.5f, -2.25f, 3.0f}));
  EXPECT_EQ(a.to(DType::kI64).to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 3}));
  Tensor b = a.to(DType::kBF16).to(DType::kF32);
  EXPECT_EQ(b.to_vector<float>(), (std::vector<float>{1.5f, -2.25f, 3.0f}));
}

TEST(Tensor, RandomIsSeeded) {
  Tensor a = Tensor::randn({100}, 7), b = Tensor::randn({100}, 7), c = Tensor::randn({100}, 8);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  EXPECT_NE(a.to_vector<float>(), c.to_vector<float>());
  double mean = 0;
  for (float v : Tensor::randn({10000}, 1).to_vector<float>()) mean += v / 10000;
  EXPECT_NEAR(mean, 0.0, 0.05);
  // Philox known-answer: counter 0, key 0 (Random123 kat_vectors, philox4x32_10).
  uint32_t c0[4] = {0, 0, 0, 0}, out[4];
  random::Philox4x32::generate(0, c0, out);
  EXPECT_EQ(out[0], 0x6627e8d5u);
  EXPECT_EQ(out[1], 0xe169c58du);
  EXPECT_EQ(out[2], 0xbc57ac4cu);
  EXPECT_EQ(out[3], 0x9b00dbd8u);
}

TEST(Tensor, ErrorsNameTheProblem) {
  Tensor a = Tensor::zeros({2, 3});
  EXPECT_THROW(a.raw_reshape({4, 2}), Error);
  EXPECT_THROW(a.raw_permute({0, 0}), Error);
  EXPECT_THROW(a.raw_expand({3, 3}), Error);
  EXPECT_THROW(a.size(2), Error);
  EXPECT_THROW(Tensor::empty({2, -1}), Error);
  EXPECT_THROW(a.data<double>(), Error);
  try {
    a.raw_reshape({4, 2});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[4, 2]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace heed
