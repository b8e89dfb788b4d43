// Test helpers shared by every numerics test: closeness with the worst element named,
// and a finite-difference gradient check in double.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "heed/tensor/tensor.h"

namespace heed::testing {

// Tolerances from STYLE.md.
struct Tol {
  double atol, rtol;
};
inline constexpr Tol kElementwise{1e-6, 1e-5};
inline constexpr Tol kReduction{1e-5, 1e-4};
inline constexpr Tol kGolden{1e-4, 1e-3};

// Passes when |a - e| <= atol + rtol |e| everywhere (and shapes match); otherwise the
// failure names the worst index and both values.
::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, Tol tol);

// Bitwise equality of two tensors' values.
::testing::AssertionResult bitwise_equal(const Tensor& a, const Tensor& b);

// Finite-difference check of d(sum(w * f(inputs)))/d(inputs) for f64 inputs, with w a fixed
// random weighting. Every input with requires_grad is checked; relative norm error of the
// analytic vs central-difference gradient must be <= max_rel (1e-6 per STYLE.md).
::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                     std::vector<Tensor> inputs, double eps = 1e-6, double max_rel = 1e-6);

// Random f64/f32 tensor with requires_grad set, for gradchecks.
Tensor rand_param(const Shape& shape, uint64_t seed, DType dtype = DType::kF64);

// n floats uniform in [-1, 1), element i from heed's counter-based generator (seed, i): the
// operands of the raw-kernel tests.
std::vector<float> uniform_floats(int64_t n, uint64_t seed);

// Whether the autograd graph behind t holds an op recorded under `name` (which path ran).
bool graph_has(const Tensor& t, const std::string& name);

}  // namespace heed::testing
