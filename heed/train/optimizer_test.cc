// Optimisers against their update formulas evaluated in double, a quadratic that Adam
// minimises, and a state export/import that continues bit for bit.
#include "heed/train/optimizer.h"

#include <cmath>

#include <gtest/gtest.h>

#include "heed/heed.h"
#include "heed/testing/numerics.h"
#include "heed/train/clip.h"

namespace heed::train {
namespace {

using testing::all_close;
using testing::bitwise_equal;

constexpr int kSteps = 4;
constexpr int64_t kN = 7;

// Gradient g_t for step t, element i: varied signs and magnitudes.
std::vector<double> grad_values(int t) {
  std::vector<double> g(kN);
  for (int64_t i = 0; i < kN; ++i) g[i] = std::sin(1.3 * (i + 1) + 0.7 * t) * (1 + 0.5 * i) - 0.1 * t;
  return g;
}

std::vector<double> init_values() {
  std::vector<double> p(kN);
  for (int64_t i = 0; i < kN; ++i) p[i] = 0.3 * i - 0.8;
  return p;
}

// Sets p.grad() to g by back-propagating sum(p * g).
void set_grad(const Tensor& p, const std::vector<double>& g) {
  p.zero_grad();
  Tensor gt = Tensor::from_vector(g, {kN}).to(p.dtype());
  sum(mul(p, gt)).backward();
}

// Runs kSteps of `opt` on a fresh parameter of `dtype` and returns its final value.
template <class MakeOpt>
Tensor run_steps(DType dtype, MakeOpt make) {
  Tensor p = Tensor::from_vector(init_values(), {kN}).to(dtype);
  p.requires_grad_();
  auto opt = make(NamedTensors{{"p", p}});
  for (int t = 1; t <= kSteps; ++t) {
    set_grad(p, grad_values(t));
    opt->step();
  }
  return p;
}

std::vector<double> sgd_reference(const SgdOptions& o) {
  std::vector<double> p = init_values(), buf(kN, 0.0);
  for (int t = 1; t <= kSteps; ++t) {
    std::vector<double> g = grad_values(t);
    for (int64_t i = 0; i < kN; ++i) {
      double d = g[i] + o.weight_decay * p[i];
      if (o.momentum != 0) {
        buf[i] = t == 1 ? d : o.momentum * buf[i] + (1 - o.dampening) * d;
        d = o.nesterov ? d + o.momentum * buf[i] : buf[i];
      }
      p[i] = p[i] - o.lr * d;
    }
  }
  return p;
}

std::vector<double> adam_reference(const AdamOptions& o) {
  std::vector<double> p = init_values(), m(kN, 0.0), v(kN, 0.0);
  for (int t = 1; t <= kSteps; ++t) {
    std::vector<double> g = grad_values(t);
    for (int64_t i = 0; i < kN; ++i) {
      if (o.decoupled_weight_decay) {
        p[i] *= 1 - o.lr * o.weight_decay;
      } else {
        g[i] += o.weight_decay * p[i];
      }
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
      double m_hat = m[i] / (1 - std::pow(o.beta1, t));
      double v_hat = v[i] / (1 - std::pow(o.beta2, t));
      p[i] -= o.lr * m_hat / (std::sqrt(v_hat) + o.eps);
    }
  }
  return p;
}

void expect_matches(const std::vector<double>& expected, auto make) {
  Tensor want = Tensor::from_vector(expected, {kN});
  EXPECT_TRUE(all_close(run_steps(DType::kF64, make), want, {1e-12, 1e-12}));
  EXPECT_TRUE(all_close(run_steps(DType::kF32, make), want, testing::kElementwise));
}

TEST(Optimizer, SgdPlainMomentumNesterovWeightDecay) {
  for (SgdOptions o : {SgdOptions{.lr = 0.1},
                       SgdOptions{.lr = 0.05, .momentum = 0.9},
                       SgdOptions{.lr = 0.05, .momentum = 0.8, .dampening = 0.3, .weight_decay = 0.01},
                       SgdOptions{.lr = 0.02, .momentum = 0.9, .weight_decay = 0.1, .nesterov = true}}) {
    SCOPED_TRACE(::testing::Message() << "momentum " << o.momentum << " nesterov " << o.nesterov);
    expect_matches(sgd_reference(o), [&](NamedTensors ps) { return std::make_unique<Sgd>(ps, o); });
  }
}

TEST(Optimizer, AdamAndAdamW) {
  for (AdamOptions o : {AdamOptions{.lr = 0.01},
                        AdamOptions{.lr = 0.003, .beta1 = 0.8, .beta2 = 0.98, .eps = 1e-6, .weight_decay = 0.1},
                        adamw_options(0.01, 0.05)}) {
    SCOPED_TRACE(::testing::Message() << "wd " << o.weight_decay << " decoupled " << o.decoupled_weight_decay);
    expect_matches(adam_reference(o), [&](NamedTensors ps) { return std::make_unique<Adam>(ps, o); });
  }
}

TEST(Optimizer, AdamMinimisesAQuadratic) {
  // f(x) = sum_i c_i (x_i - a_i)^2 with curvatures spread over two orders of magnitude.
  std::vector<double> a = {1.5, -2.0, 0.25, 3.0, -0.5}, c = {0.1, 1.0, 10.0, 0.5, 3.0};
  Tensor x = Tensor::zeros({5});
  x.requires_grad_();
  Tensor at = Tensor::from_vector(a, {5}).to(DType::kF32), ct = Tensor::from_vector(c, {5}).to(DType::kF32);
  Adam opt({{"x", x}}, AdamOptions{.lr = 0.05});
  double first = 0, last = 0;
  for (int step = 0; step < 1500; ++step) {
    opt.zero_grad();
    Tensor d = sub(x, at);
    Tensor loss = sum(mul(ct, mul(d, d)));
    if (step == 0) first = loss.item();
    last = loss.item();
    loss.backward();
    opt.step();
  }
  EXPECT_GT(first, 1.0);
  EXPECT_LT(last, 1e-6);
  EXPECT_TRUE(all_close(x, at, {1e-3, 0}));
}

// step(clip_coefficient(...)) (clipping folded into the update, what the trainer does) gives
// the same parameters, bit for bit, as clip_grad_norm followed by step(), for each
// optimiser, with and without weight decay, in f32 and f64, clipped and not clipped.
TEST(Optimizer, ClippingFoldedIntoTheStepEqualsClippingFirst) {
  auto run = [](DType dtype, bool folded, double max_norm, auto make) {
    Tensor a = Tensor::from_vector(init_values(), {kN}).to(dtype).requires_grad_();
    std::vector<double> vb = init_values();
    for (double& v : vb) v *= -0.5;
    Tensor b = Tensor::from_vector(vb, {kN}).to(dtype).requires_grad_();
    auto opt = make(NamedTensors{{"a", a}, {"b", b}});
    for (int t = 0; t < kSteps; ++t) {
      set_grad(a, grad_values(t));
      set_grad(b, grad_values(t + 7));
      if (folded) {
        opt->step(clip_coefficient(grad_norm({a, b}), max_norm));
      } else {
        clip_grad_norm({a, b}, max_norm);
        opt->step();
      }
    }
    return std::vector<Tensor>{a.detach(), b.detach()};
  };
  auto adam = [](NamedTensors p) { return std::make_unique<Adam>(std::move(p), AdamOptions{.lr = 0.1}); };
  auto adamw = [](NamedTensors p) {
    return std::make_unique<Adam>(std::move(p), AdamOptions{.lr = 0.1, .weight_decay = 0.05, .decoupled_weight_decay = true});
  };
  auto adam_l2 = [](NamedTensors p) { return std::make_unique<Adam>(std::move(p), AdamOptions{.lr = 0.1, .weight_decay = 0.05}); };
  auto sgd = [](NamedTensors p) {
    return std::make_unique<Sgd>(std::move(p), SgdOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.05});
  };
  for (DType dtype : {DType::kF32, DType::kF64})
    for (double max_norm : {0.5, 1e6}) {  // clipped every step / never
      auto check = [&](auto make, const char* name) {
        std::vector<Tensor> x = run(dtype, false, max_norm, make), y = run(dtype, true, max_norm, make);
        for (size_t i = 0; i < x.size(); ++i)
          EXPECT_TRUE(bitwise_equal(x[i], y[i])) << name << " " << dtype_name(dtype) << " max_norm " << max_norm;
      };
      check(adam, "adam");
      check(adamw, "adamw");
      check(adam_l2, "adam+l2");
      check(sgd, "sgd");
    }
  EXPECT_EQ(clip_coefficient(INFINITY, 1.0), 1.0);
  EXPECT_EQ(clip_coefficient(0.5, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(clip_coefficient(4.0, 1.0), 1.0 / (4.0 + 1e-6));
}

TEST(Optimizer, SkipsParametersWithoutGradient) {
  Tensor p = Tensor::ones({3}), q = Tensor::ones({3});
  p.requires_grad_();
  q.requires_grad_();
  Adam opt({{"p", p}, {"q", q}}, AdamOptions{.lr = 0.1});
  sum(p).backward();
  opt.step();
  EXPECT_TRUE(bitwise_equal(q, Tensor::ones({3})));
  EXPECT_LT(p.to_vector<float>()[0], 1.0f);
  NamedTensors st = opt.state();
  ASSERT_EQ(st.size(), 4u);  // p.step, p.exp_avg, p.exp_avg_sq, q.step
  EXPECT_EQ(st[0].first, "p.step");
  EXPECT_EQ(st[0].second.item(), 1.0);
  EXPECT_EQ(st[3].first, "q.step");
  EXPECT_EQ(st[3].second.item(), 0.0);
}

// Two optimisers: one runs 4 steps; the other runs 2, exports its state into a fresh
// optimiser over a copy of the parameters, which runs the last 2. Results are identical.
template <class Opt, class Options>
void check_state_round_trip(const Options& o) {
  auto fresh = [] {
    Tensor p = Tensor::from_vector(init_values(), {kN}).to(DType::kF32);
    p.requires_grad_();
    return p;
  };
  Tensor a = fresh(), b = fresh();
  Opt oa({{"w", a}}, o), ob({{"w", b}}, o);
  for (int t = 1; t <= 2; ++t) {
    set_grad(a, grad_values(t));
    oa.step();
    set_grad(b, grad_values(t));
    ob.step();
  }
  Tensor c = b.detach().clone_data();
  c.requires_grad_();
  Opt oc({{"w", c}}, o);
  NamedTensors st;
  for (auto& [k, t] : ob.state()) st.emplace_back(k, t.clone_data());
  oc.load_state(st);
  for (int t = 3; t <= kSteps; ++t) {
    set_grad(a, grad_values(t));
    oa.step();
    set_grad(c, grad_values(t));
    oc.step();
  }
  EXPECT_TRUE(bitwise_equal(a, c));
}

TEST(Optimizer, StateRoundTripContinuesExactly) {
  check_state_round_trip<Adam>(AdamOptions{.lr = 0.01, .weight_decay = 0.01});
  check_state_round_trip<Sgd>(SgdOptions{.lr = 0.01, .momentum = 0.9});
}

TEST(Optimizer, BadStateAndOptionsAreErrors) {
  Tensor p = Tensor::ones({3});
  p.requires_grad_();
  Adam opt({{"p", p}}, AdamOptions{});
  EXPECT_THROW(opt.load_state({{"p.step", Tensor::full({}, 2, DType::kI64)}}), Error);  // buffers missing
  EXPECT_THROW(opt.load_state({{"p.step", Tensor::full({}, 0, DType::kI64)}, {"r.step", Tensor::zeros({})}}),
               Error);
  EXPECT_THROW(opt.load_state({{"p.step", Tensor::full({}, 1, DType::kI64)},
                               {"p.exp_avg", Tensor::zeros({4})},
                               {"p.exp_avg_sq", Tensor::zeros({3})}}),
               Error);
  EXPECT_THROW(Adam({{"p", p}}, AdamOptions{.beta1 = 1.0}), Error);
  EXPECT_THROW(Sgd({{"p", p}}, SgdOptions{.nesterov = true}), Error);
  EXPECT_THROW(Sgd({{"p", p}, {"p", p}}, SgdOptions{}), Error);
}

}  // namespace
}  // namespace heed::train
