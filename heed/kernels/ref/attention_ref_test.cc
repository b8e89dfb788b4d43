// The reference attention's backward against central finite differences in double, for
// softmax and sigmoid weighting with masks, GQA and dropout.
#include "heed/kernels/ref/attention_ref.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "heed/tensor/random.h"

namespace heed::kernels::ref {
namespace {

struct RefSetup {
  cpu::FlashParams p;
  std::vector<double> q, k, v, am, dout;
  std::vector<uint8_t> bm;
  cpu::Strides4 dout_strides;
};

RefSetup make(cpu::AttentionWeighting w, float dropout) {
  RefSetup s;
  const int64_t B = 2, Hq = 2, Hkv = 1, T = 3, S = 5, D = 3, Dv = 2;
  cpu::FlashParams& p = s.p;
  p.batch = B;
  p.q_heads = Hq;
  p.kv_heads = Hkv;
  p.q_len = T;
  p.kv_len = S;
  p.head_dim = D;
  p.v_head_dim = Dv;
  p.scale = 0.6f;
  p.q_strides = {Hq * T * D, T * D, D, 1};
  p.k_strides = {Hkv * S * D, S * D, D, 1};
  p.v_strides = {Hkv * S * Dv, S * Dv, Dv, 1};
  s.dout_strides = {Hq * T * Dv, T * Dv, Dv, 1};
  p.mask.causal = true;
  p.mask.causal_offset = 2;
  p.weighting = w;
  p.dropout = {dropout, 5, 9};
  auto fill = [](int64_t n, uint64_t stream) {
    std::vector<double> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = heed::random::normal(3, stream, i);
    return x;
  };
  s.q = fill(B * Hq * T * D, 1);
  s.k = fill(B * Hkv * S * D, 2);
  s.v = fill(B * Hkv * S * Dv, 3);
  s.dout = fill(B * Hq * T * Dv, 4);
  s.am = fill(Hq * T * S, 5);  // broadcast over the batch
  p.mask.additive_strides = {0, T * S, S, 1};
  s.bm.assign(B * Hq * T * S, 1);
  s.bm[7] = 0;
  s.bm[20] = 0;
  p.mask.bool_mask = s.bm.data();
  p.mask.bool_strides = {Hq * T * S, T * S, S, 1};
  return s;
}

double loss(const RefSetup& s) {
  const AttentionRefForward f =
      attention_ref_forward(s.p, s.q.data(), s.k.data(), s.v.data(), s.am.data());
  double l = 0.0;
  for (size_t x = 0; x < f.out.size(); ++x) l += f.out[x] * s.dout[x];
  return l;
}

// Relative norm error between the analytic gradient and central differences.
double fd_error(RefSetup& s, std::vector<double>& x, const std::vector<double>& analytic) {
  double num = 0.0, den = 0.0;
  const double h = 1e-6;
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = loss(s);
    x[i] = keep - h;
    const double down = loss(s);
    x[i] = keep;
    const double fd = (up - down) / (2 * h);
    num += (fd - analytic[i]) * (fd - analytic[i]);
    den += analytic[i] * analytic[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1.0));
}

void check(cpu::AttentionWeighting w, float dropout) {
  RefSetup s = make(w, dropout);
  const AttentionRefBackward g = attention_ref_backward(s.p, s.q.data(), s.k.data(), s.v.data(),
                                                        s.am.data(), s.dout.data(), s.dout_strides);
  std::vector<double> gam(s.am.size());
  reduce_to_mask_layout(s.p, g.grad_scores, gam.data());
  EXPECT_LE(fd_error(s, s.q, g.grad_q), 1e-6);
  EXPECT_LE(fd_error(s, s.k, g.grad_k), 1e-6);
  EXPECT_LE(fd_error(s, s.v, g.grad_v), 1e-6);
  EXPECT_LE(fd_error(s, s.am, gam), 1e-6);
}

TEST(AttentionRef, SoftmaxGradientsMatchFiniteDifferences) { check(cpu::AttentionWeighting::kSoftmax, 0.0f); }
TEST(AttentionRef, SigmoidGradientsMatchFiniteDifferences) { check(cpu::AttentionWeighting::kSigmoid, 0.0f); }
TEST(AttentionRef, DropoutGradientsMatchFiniteDifferences) { check(cpu::AttentionWeighting::kSoftmax, 0.3f); }

TEST(AttentionRef, FullyMaskedRowIsZero) {
  RefSetup s = make(cpu::AttentionWeighting::kSoftmax, 0.0f);
  s.p.mask.causal_offset = -1;  // query row 0 sees no key
  const AttentionRefForward f = attention_ref_forward(s.p, s.q.data(), s.k.data(), s.v.data(), s.am.data());
  EXPECT_EQ(f.lse[0], -std::numeric_limits<double>::infinity());
  EXPECT_EQ(f.out[0], 0.0);
  EXPECT_EQ(f.out[1], 0.0);
}

}  // namespace
}  // namespace heed::kernels::ref
