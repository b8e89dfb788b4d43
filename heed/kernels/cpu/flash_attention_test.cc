// Fused CPU attention against the naive double-precision reference: values, lse and every
// gradient for each mask kind, odd sizes, strided views, GQA, sigmoid weighting, dropout,
// the T = 1 decoding path, weights from lse, bf16, and 1 vs 2 threads bitwise.
#include "heed/kernels/cpu/flash_attention.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "heed/kernels/ref/attention_ref.h"
#include "heed/tensor/dtype.h"
#include "heed/tensor/error.h"
#include "heed/tensor/random.h"

namespace heed::kernels::cpu {
namespace {

constexpr float kInfF = std::numeric_limits<float>::infinity();

// How a [n0, n1, n2, n3] operand is laid out in memory.
enum class Layout {
  kContiguous,  // [n0, n1, n2, n3]
  kBTHD,        // storage [n0, n2, n1, n3]: heads interleaved, as a [B, T, H, D] projection
  kPadded,      // contiguous rows with gaps between rows, heads and batches
  kDMajor,      // storage [n0, n1, n3, n2]: the last logical dim has a non-unit stride
};

Strides4 layout_strides(Layout l, const std::array<int64_t, 4>& n, int64_t* size) {
  Strides4 s{};
  switch (l) {
    case Layout::kContiguous: s = {n[1] * n[2] * n[3], n[2] * n[3], n[3], 1}; break;
    case Layout::kBTHD: s = {n[2] * n[1] * n[3], n[3], n[1] * n[3], 1}; break;
    case Layout::kPadded: {
      const int64_t row = n[3] + 3, head = n[2] * row + 5;
      s = {n[1] * head + 7, head, row, 1};
      break;
    }
    case Layout::kDMajor: s = {n[1] * n[3] * n[2], n[3] * n[2], 1, n[2]}; break;
  }
  int64_t last = 0;
  for (int x = 0; x < 4; ++x) last += (n[x] - 1) * s[x];
  *size = last + 1;
  return s;
}

struct Case {
  std::string name;
  int64_t B = 1, Hq = 1, Hkv = 1, T = 7, S = 7, D = 8, Dv = 8;
  Layout layout = Layout::kContiguous;
  bool causal = false;
  int64_t causal_offset = 0, window_left = -1, window_right = -1;
  bool key_lengths = false;
  bool bool_mask = false;
  bool additive_mask = false;
  // Bit x set: the masks broadcast over dimension x of [B, Hq, T, S] (stride 0).
  int mask_broadcast = 0;
  AttentionWeighting weighting = AttentionWeighting::kSoftmax;
  float dropout = 0.0f;
  float scale = 0.0f;  // 0: 1/sqrt(D)
  float key_growth = 0.0f;  // key j of K is scaled by 1 + key_growth * j (row maxima rising along the keys)
  uint64_t seed = 1;
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

float randn(uint64_t seed, uint64_t stream, uint64_t i) {
  return static_cast<float>(heed::random::normal(seed, stream, i));
}

// All the buffers of one problem, with FlashParams and FlashGrads pointing into them.
struct Problem {
  Case c;
  FlashParams p;
  FlashGrads g;
  std::vector<float> q, k, v, out, lse, am, dout, dq, dk, dv, dam;
  std::vector<uint8_t> bm;
  std::vector<int64_t> lens;
  std::array<int64_t, 4> q_shape, k_shape, v_shape, o_shape;
  Strides4 dout_strides{};

  explicit Problem(const Case& cs) : c(cs) {
    p.batch = c.B;
    p.q_heads = c.Hq;
    p.kv_heads = c.Hkv;
    p.q_len = c.T;
    p.kv_len = c.S;
    p.head_dim = c.D;
    p.v_head_dim = c.Dv;
    p.scale = c.scale != 0.0f ? c.scale : 1.0f / std::sqrt(static_cast<float>(c.D));
    q_shape = {c.B, c.Hq, c.T, c.D};
    k_shape = {c.B, c.Hkv, c.S, c.D};
    v_shape = {c.B, c.Hkv, c.S, c.Dv};
    o_shape = {c.B, c.Hq, c.T, c.Dv};
    int64_t n;
    p.q_strides = layout_strides(c.layout, q_shape, &n);
    q = filled(n, 1);
    p.k_strides = layout_strides(c.layout, k_shape, &n);
    k = filled(n, 2);
    if (c.key_growth != 0.0f) {
      const Strides4& ks = p.k_strides;
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t h = 0; h < c.Hkv; ++h)
          for (int64_t j = 0; j < c.S; ++j)
            for (int64_t d = 0; d < c.D; ++d) k[b * ks[0] + h * ks[1] + j * ks[2] + d * ks[3]] *= 1.0f + c.key_growth * j;
    }
    p.v_strides = layout_strides(c.layout, v_shape, &n);
    v = filled(n, 3);
    p.out_strides = layout_strides(c.layout, o_shape, &n);
    out.assign(n, std::nanf(""));
    dout_strides = layout_strides(c.layout, o_shape, &n);
    dout = filled(n, 4);
    lse.assign(c.B * c.Hq * c.T, std::nanf(""));
    p.q = q.data();
    p.k = k.data();
    p.v = v.data();
    p.out = out.data();
    p.lse = lse.data();
    p.mask.causal = c.causal;
    p.mask.causal_offset = c.causal_offset;
    p.mask.window_left = c.window_left;
    p.mask.window_right = c.window_right;
    p.weighting = c.weighting;
    p.dropout = {c.dropout, 1234 + c.seed, 77};
    const Strides4 mask_strides = broadcast_strides();
    int64_t mask_size = 1;
    for (int x = 0; x < 4; ++x)
      if (mask_strides[x] != 0) mask_size = std::max(mask_size, mask_strides[x] * dim(x));
    if (c.key_lengths) {
      // Varied lengths, one of them 0 (a fully masked batch entry when B > 1).
      for (int64_t b = 0; b < c.B; ++b) lens.push_back(b == 1 ? 0 : std::max<int64_t>(1, c.S - 3 * b - 2));
      p.mask.key_lengths = lens.data();
    }
    if (c.bool_mask) {
      bm.resize(mask_size);
      for (int64_t x = 0; x < mask_size; ++x)
        bm[x] = heed::random::uniform(c.seed, 5, x) < 0.75f ? 1 : 0;
      // One fully masked row (every key of query row 0, for whatever b/h share it).
      if (mask_strides[2] != 0 && mask_strides[3] != 0)
        for (int64_t j = 0; j < c.S; ++j) bm[j * mask_strides[3]] = 0;
      p.mask.bool_mask = bm.data();
      p.mask.bool_strides = mask_strides;
    }
    if (c.additive_mask) {
      am.resize(mask_size);
      for (int64_t x = 0; x < mask_size; ++x)
        am[x] = heed::random::uniform(c.seed, 6, x) < 0.1f ? -kInfF : randn(c.seed, 7, x);
      p.mask.additive_mask = am.data();
      p.mask.additive_strides = mask_strides;
      dam.assign(mask_size, std::nanf(""));
    }
    int64_t gn;
    g.grad_out = dout.data();
    g.grad_out_strides = dout_strides;
    g.grad_q_strides = layout_strides(c.layout, q_shape, &gn);
    dq.assign(gn, std::nanf(""));
    g.grad_k_strides = layout_strides(c.layout, k_shape, &gn);
    dk.assign(gn, std::nanf(""));
    g.grad_v_strides = layout_strides(c.layout, v_shape, &gn);
    dv.assign(gn, std::nanf(""));
    g.grad_q = dq.data();
    g.grad_k = dk.data();
    g.grad_v = dv.data();
    g.grad_additive_mask = c.additive_mask ? dam.data() : nullptr;
  }

  int64_t dim(int x) const { return x == 0 ? c.B : x == 1 ? c.Hq : x == 2 ? c.T : c.S; }
  Strides4 broadcast_strides() const {
    Strides4 s{};
    int64_t stride = 1;
    for (int x = 3; x >= 0; --x) {
      if (c.mask_broadcast & (1 << x)) {
        s[x] = 0;
      } else {
        s[x] = stride;
        stride *= dim(x);
      }
    }
    return s;
  }
  std::vector<float> filled(int64_t n, uint64_t stream) const {
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = randn(c.seed, stream, i);
    return x;
  }
};

// Compares a strided fp32 result with a contiguous double reference of the same logical
// shape; on failure prints the worst element and both values.
void expect_close(const char* what, const float* got, const Strides4& s,
                  const std::array<int64_t, 4>& n, const std::vector<double>& want, double atol,
                  double rtol) {
  int64_t bad = 0, worst = -1;
  double worst_excess = 0.0;
  float worst_got = 0.0f;
  for (int64_t a = 0; a < n[0]; ++a)
    for (int64_t b = 0; b < n[1]; ++b)
      for (int64_t c = 0; c < n[2]; ++c)
        for (int64_t d = 0; d < n[3]; ++d) {
          const int64_t lin = ((a * n[1] + b) * n[2] + c) * n[3] + d;
          const float x = got[a * s[0] + b * s[1] + c * s[2] + d * s[3]];
          const double w = want[lin];
          const double err = std::fabs(static_cast<double>(x) - w);
          const double excess = std::isfinite(x) ? err - (atol + rtol * std::fabs(w)) : 1e300;
          if (excess > 0.0) {
            ++bad;
            if (excess > worst_excess) {
              worst_excess = excess;
              worst = lin;
              worst_got = x;
            }
          }
        }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " elements out of tolerance; worst at linear index "
                    << worst << ": got " << worst_got << ", want " << (worst >= 0 ? want[worst] : 0.0);
}

void expect_lse(const Problem& pr, const std::vector<double>& want) {
  int64_t bad = 0, worst = -1;
  for (size_t x = 0; x < want.size(); ++x) {
    const bool ok = std::isinf(want[x]) ? pr.lse[x] == -kInfF
                                        : std::fabs(pr.lse[x] - want[x]) <= 1e-5 + 1e-4 * std::fabs(want[x]);
    if (!ok) {
      ++bad;
      worst = static_cast<int64_t>(x);
    }
  }
  EXPECT_EQ(bad, 0) << "lse: " << bad << " rows wrong; e.g. row " << worst << ": got "
                    << (worst >= 0 ? pr.lse[worst] : 0.0f) << ", want " << (worst >= 0 ? want[worst] : 0.0);
}

std::vector<CpuIsa> isas() {
  std::vector<CpuIsa> out = {CpuIsa::kScalar};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out.push_back(CpuIsa::kAvx2);
  if (resolve_cpu_isa(CpuIsa::kAuto) == CpuIsa::kAvx512) out.push_back(CpuIsa::kAvx512);
  return out;
}

// Forward and backward of one case on every ISA, against the reference.
void check_case(const Case& cs, bool backward = true) {
  Problem pr(cs);
  const ref::AttentionRefForward rf = ref::attention_ref_forward(pr.p);
  ref::AttentionRefBackward rb;
  std::vector<double> rdam;
  if (backward) {
    rb = ref::attention_ref_backward(pr.p, pr.dout.data(), pr.dout_strides);
    if (cs.additive_mask) {
      rdam.assign(pr.am.size(), 0.0);
      ref::reduce_to_mask_layout(pr.p, rb.grad_scores, rdam.data());
    }
  }
  for (CpuIsa isa : isas()) {
    SCOPED_TRACE(std::string("isa ") + cpu_isa_name(isa));
    pr.p.isa = isa;
    std::fill(pr.out.begin(), pr.out.end(), std::nanf(""));
    flash_attention_forward(pr.p);
    expect_close("out", pr.out.data(), pr.p.out_strides, pr.o_shape, rf.out, 1e-5, 1e-4);
    if (cs.weighting == AttentionWeighting::kSoftmax) expect_lse(pr, rf.lse);
    if (!backward) continue;
    flash_attention_backward(pr.p, pr.g);
    expect_close("grad_q", pr.dq.data(), pr.g.grad_q_strides, pr.q_shape, rb.grad_q, 1e-5, 1e-4);
    expect_close("grad_k", pr.dk.data(), pr.g.grad_k_strides, pr.k_shape, rb.grad_k, 1e-5, 1e-4);
    expect_close("grad_v", pr.dv.data(), pr.g.grad_v_strides, pr.v_shape, rb.grad_v, 1e-5, 1e-4);
    if (cs.additive_mask) {
      // Compare every element the mask's strides reach.
      const Strides4 ms = pr.p.mask.additive_strides;
      int64_t bad = 0;
      for (size_t x = 0; x < rdam.size(); ++x) {
        bool reached = false;
        for (int64_t b = 0; b < cs.B && !reached; ++b)
          for (int64_t h = 0; h < cs.Hq && !reached; ++h)
            for (int64_t i = 0; i < cs.T && !reached; ++i)
              for (int64_t j = 0; j < cs.S && !reached; ++j)
                reached = b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3] == static_cast<int64_t>(x);
        if (!reached) continue;
        if (!(std::fabs(pr.dam[x] - rdam[x]) <= 1e-5 + 1e-4 * std::fabs(rdam[x]))) {
          if (bad == 0)
            ADD_FAILURE() << "grad_additive_mask at " << x << ": got " << pr.dam[x] << ", want " << rdam[x];
          ++bad;
        }
      }
      EXPECT_EQ(bad, 0) << "grad_additive_mask elements out of tolerance";
    }
  }
}

class FlashAttentionCase : public ::testing::TestWithParam<Case> {};

TEST_P(FlashAttentionCase, ForwardAndBackwardMatchReference) { check_case(GetParam()); }

Case mk(std::string name, int64_t T, int64_t S, int64_t D, int64_t Dv) {
  Case c;
  c.name = std::move(name);
  c.T = T;
  c.S = S;
  c.D = D;
  c.Dv = Dv;
  return c;
}

std::vector<Case> cases() {
  std::vector<Case> v;
  // Odd sizes, no masks.
  v.push_back(mk("T1_S1_D1", 1, 1, 1, 1));
  v.push_back(mk("T7_S7_D7", 7, 7, 7, 7));
  v.push_back(mk("T33_S257_D64_Dv80", 33, 257, 64, 80));
  v.push_back(mk("T257_S33_D80_Dv7", 257, 33, 80, 7));
  v.push_back(mk("T257_S257_D64", 257, 257, 64, 64));
  v.push_back(mk("T1_S257_D7_Dv1", 1, 257, 7, 1));
  v.push_back(mk("T33_S1_D64", 33, 1, 64, 64));
  v.push_back(mk("T5_S0_no_keys", 5, 0, 8, 8));
  v.push_back(mk("T1_S0_no_keys_decode", 1, 0, 8, 8));
  {
    Case c = mk("B2_H3_T33_S7_D7_Dv64", 33, 7, 7, 64);
    c.B = 2;
    c.Hq = c.Hkv = 3;
    v.push_back(c);
  }
  // Strided views.
  for (Layout l : {Layout::kBTHD, Layout::kPadded, Layout::kDMajor}) {
    Case c = mk(l == Layout::kBTHD ? "BTHD_layout" : l == Layout::kPadded ? "padded_layout" : "dmajor_layout",
                33, 40, 7, 16);
    c.B = 2;
    c.Hq = 4;
    c.Hkv = 2;
    c.layout = l;
    c.causal = true;
    c.causal_offset = 7;
    v.push_back(c);
  }
  // Each mask kind.
  {
    Case c = mk("causal", 70, 70, 64, 64);
    c.causal = true;
    v.push_back(c);
  }
  {
    Case c = mk("causal_decode_offset", 33, 257, 16, 16);
    c.causal = true;
    c.causal_offset = 257 - 33;
    v.push_back(c);
  }
  {
    Case c = mk("causal_negative_offset_masks_rows", 40, 30, 8, 8);
    c.causal = true;
    c.causal_offset = -5;  // rows 0..4 see no key at all
    v.push_back(c);
  }
  {
    Case c = mk("window_left", 100, 100, 8, 12);
    c.window_left = 9;
    v.push_back(c);
  }
  {
    Case c = mk("window_left_right", 100, 130, 8, 8);
    c.window_left = 20;
    c.window_right = 5;
    c.causal_offset = 30;
    v.push_back(c);
  }
  {
    Case c = mk("key_lengths", 33, 100, 16, 16);
    c.B = 3;
    c.key_lengths = true;
    v.push_back(c);
  }
  {
    Case c = mk("bool_mask", 33, 70, 16, 8);
    c.B = 2;
    c.Hq = 2;
    c.Hkv = 2;
    c.bool_mask = true;
    v.push_back(c);
  }
  {
    Case c = mk("bool_mask_broadcast_heads", 33, 70, 16, 8);
    c.B = 2;
    c.Hq = 2;
    c.Hkv = 1;
    c.bool_mask = true;
    c.mask_broadcast = 1 << 1;
    v.push_back(c);
  }
  {
    Case c = mk("additive_mask", 33, 70, 16, 24);
    c.B = 2;
    c.Hq = 2;
    c.Hkv = 2;
    c.additive_mask = true;
    v.push_back(c);
  }
  {
    Case c = mk("additive_mask_broadcast_batch_heads", 33, 70, 16, 16);
    c.B = 2;
    c.Hq = 4;
    c.Hkv = 2;
    c.additive_mask = true;
    c.mask_broadcast = (1 << 0) | (1 << 1);
    v.push_back(c);
  }
  {
    Case c = mk("additive_mask_broadcast_rows", 70, 33, 8, 8);
    c.B = 2;
    c.Hq = 2;
    c.additive_mask = true;
    c.mask_broadcast = 1 << 2;  // one bias per key, shared by every query row
    v.push_back(c);
  }
  {
    Case c = mk("additive_mask_broadcast_keys", 33, 40, 8, 8);
    c.Hq = 2;
    c.additive_mask = true;
    c.mask_broadcast = 1 << 3;
    v.push_back(c);
  }
  // Combinations.
  {
    Case c = mk("causal_window_lengths_bool_additive", 70, 90, 16, 16);
    c.B = 3;
    c.Hq = 2;
    c.Hkv = 1;
    c.causal = true;
    c.causal_offset = 20;
    c.window_left = 30;
    c.key_lengths = true;
    c.bool_mask = true;
    c.additive_mask = true;
    c.mask_broadcast = 1 << 1;
    v.push_back(c);
  }
  // GQA.
  {
    Case c = mk("gqa_8_to_2", 33, 65, 16, 16);
    c.B = 2;
    c.Hq = 8;
    c.Hkv = 2;
    v.push_back(c);
  }
  // Sigmoid weighting, alone and with masks and dropout.
  {
    Case c = mk("sigmoid", 33, 70, 16, 8);
    c.weighting = AttentionWeighting::kSigmoid;
    v.push_back(c);
  }
  {
    Case c = mk("sigmoid_masks_dropout", 33, 70, 16, 8);
    c.B = 2;
    c.Hq = 2;
    c.weighting = AttentionWeighting::kSigmoid;
    c.causal = true;
    c.causal_offset = 37;
    c.key_lengths = true;
    c.additive_mask = true;
    c.dropout = 0.2f;
    v.push_back(c);
  }
  // Dropout.
  {
    Case c = mk("dropout", 33, 70, 16, 16);
    c.B = 2;
    c.Hq = 2;
    c.dropout = 0.3f;
    v.push_back(c);
  }
  {
    Case c = mk("dropout_causal_gqa", 65, 65, 8, 8);
    c.Hq = 4;
    c.Hkv = 2;
    c.causal = true;
    c.dropout = 0.5f;
    v.push_back(c);
  }
  // Scale other than 1/sqrt(D), including negative.
  {
    Case c = mk("negative_scale", 33, 33, 8, 8);
    c.scale = -0.7f;
    c.causal = true;
    v.push_back(c);
  }
  // T = 1 decoding path: several chunks, masks, GQA.
  {
    Case c = mk("decode_long", 1, 1000, 64, 64);
    c.B = 2;
    c.Hq = 4;
    c.Hkv = 2;
    c.key_lengths = true;
    v.push_back(c);
  }
  {
    Case c = mk("decode_masks_dropout", 1, 300, 8, 16);
    c.B = 2;
    c.Hq = 2;
    c.causal = true;
    c.causal_offset = 299;
    c.window_left = 200;
    c.bool_mask = true;
    c.additive_mask = true;
    c.dropout = 0.25f;
    v.push_back(c);
  }
  {
    Case c = mk("decode_sigmoid", 1, 600, 8, 8);
    c.Hq = 2;
    c.weighting = AttentionWeighting::kSigmoid;
    v.push_back(c);
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Cases, FlashAttentionCase, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// A long row (S = 1000) at D = 64: fp32 sums of 1000 terms still meet 1e-5 / 1e-4.
// Sharp scores whose row maxima keep rising along the keys, within and across key blocks
// and by far more than the forward's slack on its reference max (kMaxSlack in the kernel):
// its rescaling of a block's earlier weights and of O is exercised, not only the first
// block's. Forward only: with keys this large (up to 16x) the gradients are too
// ill-conditioned for fp32 to meet the reference tolerance (before and after that change).
TEST(FlashAttention, RisingSharpScoresForwardMatchesReference) {
  Case c = mk("rising_sharp_scores", 70, 300, 16, 16);
  c.scale = 1.5f;
  c.key_growth = 0.05f;
  check_case(c, /*backward=*/false);
  c.causal = true;
  c.Hq = 4;
  c.Hkv = 2;
  check_case(c, /*backward=*/false);
}

TEST(FlashAttention, LongRowsMatchReference) {
  Case c = mk("T1000_S1000_D64", 1000, 1000, 64, 64);
  c.causal = true;
  check_case(c);
}

TEST(FlashAttention, FullyMaskedRowsGiveZeroOutputAndGradients) {
  Case c = mk("fully_masked", 20, 30, 8, 8);
  c.B = 2;
  c.key_lengths = true;  // batch 1 has length 0: every row masked
  c.causal = true;
  c.causal_offset = -3;  // rows 0..2 of batch 0 see nothing either
  c.additive_mask = true;
  for (CpuIsa isa : isas()) {
    Problem pr(c);
    pr.p.isa = isa;
    flash_attention_forward(pr.p);
    flash_attention_backward(pr.p, pr.g);
    for (int64_t i = 0; i < c.T; ++i) {
      for (int64_t b = 0; b < c.B; ++b) {
        const bool masked = b == 1 || i < 3;
        if (!masked) continue;
        EXPECT_EQ(pr.lse[b * c.T + i], -kInfF) << "b " << b << " row " << i;
        for (int64_t d = 0; d < c.Dv; ++d) {
          const Strides4& os = pr.p.out_strides;
          EXPECT_EQ(pr.out[b * os[0] + i * os[2] + d * os[3]], 0.0f);
        }
        for (int64_t d = 0; d < c.D; ++d) {
          const Strides4& qs = pr.g.grad_q_strides;
          EXPECT_EQ(pr.dq[b * qs[0] + i * qs[2] + d * qs[3]], 0.0f);
        }
      }
    }
    for (int64_t j = 0; j < c.S; ++j)
      for (int64_t d = 0; d < c.D; ++d) {
        const Strides4& ks = pr.g.grad_k_strides;
        EXPECT_EQ(pr.dk[1 * ks[0] + j * ks[2] + d * ks[3]], 0.0f);
      }
    for (float x : pr.out) EXPECT_FALSE(std::isnan(x));
    for (float x : pr.dq) EXPECT_FALSE(std::isnan(x));
    for (float x : pr.dk) EXPECT_FALSE(std::isnan(x));
    for (float x : pr.dv) EXPECT_FALSE(std::isnan(x));
    for (float x : pr.dam) EXPECT_FALSE(std::isnan(x));
  }
}

// Outputs must not write outside the view: the gaps of a padded layout stay untouched.
TEST(FlashAttention, StridedOutputsLeaveGapsUntouched) {
  Case c = mk("padded", 33, 40, 7, 9);
  c.B = 2;
  c.Hq = 2;
  c.layout = Layout::kPadded;
  Problem pr(c);
  flash_attention_forward(pr.p);
  flash_attention_backward(pr.p, pr.g);
  auto count_nan = [](const std::vector<float>& x) {
    int64_t n = 0;
    for (float f : x) n += std::isnan(f) ? 1 : 0;
    return n;
  };
  auto reached = [](const std::array<int64_t, 4>& n) { return n[0] * n[1] * n[2] * n[3]; };
  EXPECT_EQ(static_cast<int64_t>(pr.out.size()) - count_nan(pr.out), reached(pr.o_shape));
  EXPECT_EQ(static_cast<int64_t>(pr.dq.size()) - count_nan(pr.dq), reached(pr.q_shape));
  EXPECT_EQ(static_cast<int64_t>(pr.dk.size()) - count_nan(pr.dk), reached(pr.k_shape));
  EXPECT_EQ(static_cast<int64_t>(pr.dv.size()) - count_nan(pr.dv), reached(pr.v_shape));
}

// Weights from lse: exact probabilities for chosen heads and rows, nothing else written.
TEST(FlashAttention, WeightsFromLseMatchReference) {
  for (AttentionWeighting w : {AttentionWeighting::kSoftmax, AttentionWeighting::kSigmoid}) {
    Case c = mk("weights", 100, 90, 16, 16);
    c.B = 2;
    c.Hq = 4;
    c.Hkv = 2;
    c.causal = true;
    c.causal_offset = 10;
    c.bool_mask = true;
    c.key_lengths = true;
    c.weighting = w;
    for (CpuIsa isa : isas()) {
      SCOPED_TRACE(cpu_isa_name(isa));
      Problem pr(c);
      pr.p.isa = isa;
      const ref::AttentionRefForward rf = ref::attention_ref_forward(pr.p);
      flash_attention_forward(pr.p);
      const std::vector<FlashHead> heads = {{0, 3}, {1, 0}, {0, 1}};
      const int64_t r0 = 5, r1 = 83;
      std::vector<float> wts(heads.size() * (r1 - r0) * c.S + 1, std::nanf(""));
      flash_attention_weights(pr.p, {heads, r0, r1, wts.data()});
      std::vector<double> want;
      for (const FlashHead& h : heads)
        for (int64_t i = r0; i < r1; ++i)
          for (int64_t j = 0; j < c.S; ++j)
            want.push_back(rf.weights[((h.batch * c.Hq + h.head) * c.T + i) * c.S + j]);
      expect_close("weights", wts.data(), {0, 0, c.S, 1},
                   {1, 1, static_cast<int64_t>(heads.size()) * (r1 - r0), c.S}, want, 1e-6, 1e-4);
      EXPECT_TRUE(std::isnan(wts.back())) << "wrote past the requested rows";
    }
  }
}

// Results are bitwise identical for 1 and 2 threads within one ISA.
TEST(FlashAttention, OneAndTwoThreadsBitwiseIdentical) {
  std::vector<Case> cs;
  {
    Case c = mk("threads_causal_gqa_dropout", 130, 150, 16, 24);
    c.B = 3;
    c.Hq = 4;
    c.Hkv = 2;
    c.causal = true;
    c.causal_offset = 20;
    c.additive_mask = true;
    c.mask_broadcast = 1 << 0;
    c.dropout = 0.1f;
    cs.push_back(c);
  }
  {
    Case c = mk("threads_decode", 1, 2000, 64, 64);
    c.B = 1;
    c.Hq = 3;
    c.Hkv = 3;
    cs.push_back(c);
  }
  // One (batch, kv head): on two threads the backward takes its two-pass form (dK/dV over key
  // chunks, then dQ over query blocks), which must give the one-pass result bit for bit.
  {
    Case c = mk("threads_one_kv_head_causal_gqa", 300, 330, 32, 24);
    c.Hq = 2;
    c.causal = true;
    c.causal_offset = 30;
    c.key_lengths = true;
    c.additive_mask = true;
    c.dropout = 0.1f;
    cs.push_back(c);
  }
  {
    Case c = mk("threads_one_head_strided_bool_window_right", 257, 257, 16, 16);
    c.layout = Layout::kDMajor;  // grad_k / grad_v rows not unit-stride: per-thread dK/dV buffers
    c.bool_mask = true;
    c.window_right = 40;
    cs.push_back(c);
  }
  {
    Case c = mk("threads_one_head_long_keys_whole_blocks", 70, 600, 32, 32);  // chunks of several blocks
    cs.push_back(c);
  }
  {
    Case c = mk("threads_one_head_causal_sigmoid_empty_rows", 200, 200, 16, 16);
    c.causal = true;
    c.causal_offset = -3;  // the first rows see no key
    c.weighting = AttentionWeighting::kSigmoid;
    cs.push_back(c);
  }
  const int saved = omp_get_max_threads();
  for (const Case& c : cs) {
    for (CpuIsa isa : isas()) {
      SCOPED_TRACE(c.name + " " + cpu_isa_name(isa));
      Problem one(c), two(c);
      one.p.isa = two.p.isa = isa;
      omp_set_num_threads(1);
      flash_attention_forward(one.p);
      flash_attention_backward(one.p, one.g);
      omp_set_num_threads(2);
      flash_attention_forward(two.p);
      flash_attention_backward(two.p, two.g);
      auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
        return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
      };
      EXPECT_TRUE(same(one.out, two.out));
      EXPECT_TRUE(same(one.lse, two.lse));
      EXPECT_TRUE(same(one.dq, two.dq));
      EXPECT_TRUE(same(one.dk, two.dk));
      EXPECT_TRUE(same(one.dv, two.dv));
      EXPECT_TRUE(same(one.dam, two.dam));
      if (isa == CpuIsa::kAvx512 && cpu_has_avx512_bf16()) {
        for (FlashBf16Engine engine : {FlashBf16Engine::kDotProduct, FlashBf16Engine::kAmx}) {
          if (engine == FlashBf16Engine::kAmx && !cpu_has_amx_bf16()) continue;
          one.p.precision = two.p.precision = FlashPrecision::kBF16;
          one.p.bf16_engine = two.p.bf16_engine = engine;
          omp_set_num_threads(1);
          flash_attention_forward(one.p);
          omp_set_num_threads(2);
          flash_attention_forward(two.p);
          EXPECT_TRUE(same(one.out, two.out)) << "bf16 engine " << static_cast<int>(engine);
        }
      }
    }
  }
  omp_set_num_threads(saved);
}

// Extra memory is per-thread block scratch plus O(T) row statistics, never O(T x S), and a
// repeated call reuses the workspace instead of asking for more.
TEST(FlashAttention, WorkspaceStaysBlockSizedAndIsReused) {
  Case c = mk("workspace", 4096, 4096, 64, 64);
  c.B = 1;
  c.Hq = c.Hkv = 2;
  c.causal = true;
  Problem pr(c);
  FlashWorkspace ws;
  pr.p.workspace = &ws;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);  // the bound below is per thread
  flash_attention_forward(pr.p);
  const size_t forward_bytes = ws.last_request();
  flash_attention_backward(pr.p, pr.g);
  const size_t held = ws.bytes();
  const size_t scores_bytes = sizeof(float) * c.T * c.S;  // one head's score matrix: 64 MiB
  const size_t row_stats = sizeof(float) * c.B * c.Hq * c.T;
  const size_t bound = 2u * 2 * 1024 * 1024 + 4 * row_stats;  // 2 MiB a thread, plus row statistics
  EXPECT_GT(forward_bytes, 0u);
  EXPECT_LE(held, bound) << "workspace " << held << " bytes; one score matrix would be " << scores_bytes;
  EXPECT_LT(held * 16, scores_bytes);
  flash_attention_forward(pr.p);
  flash_attention_backward(pr.p, pr.g);
  EXPECT_EQ(ws.bytes(), held) << "a repeated call asked for more memory";
  omp_set_num_threads(saved);
}

// The micro-kernel path and the cblas_sgemm path agree.
TEST(FlashAttention, BlasBlockProductsMatchReference) {
  Case c = mk("blas", 100, 130, 64, 64);
  c.B = 2;
  c.causal = true;
  c.causal_offset = 30;
  Problem pr(c);
  pr.p.gemm = FlashGemm::kBlas;
  const ref::AttentionRefForward rf = ref::attention_ref_forward(pr.p);
  flash_attention_forward(pr.p);
  expect_close("out", pr.out.data(), pr.p.out_strides, pr.o_shape, rf.out, 1e-5, 1e-4);
  expect_lse(pr, rf.lse);
}

float round_bf16(float x) { return static_cast<float>(heed::bf16(x)); }

// A naive bf16 attention (flash-attention's yardstick): q, k, v rounded to bf16, Q K^T
// accumulated in fp32, softmax in fp32, P rounded to bf16 and P V accumulated in fp32.
// Supports the causal mask only. Returns [B, Hq, T, Dv].
std::vector<double> naive_bf16_attention(const Problem& pr) {
  const Case& c = pr.c;
  const FlashParams& p = pr.p;
  const int64_t group = c.Hq / c.Hkv;
  std::vector<double> out(c.B * c.Hq * c.T * c.Dv, 0.0);
  std::vector<float> w(c.S);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h)
      for (int64_t i = 0; i < c.T; ++i) {
        const int64_t kvh = h / group;
        float mx = -kInfF;
        for (int64_t j = 0; j < c.S; ++j) {
          float dot = 0.0f;
          for (int64_t d = 0; d < c.D; ++d)
            dot += round_bf16(pr.q[b * p.q_strides[0] + h * p.q_strides[1] + i * p.q_strides[2] + d * p.q_strides[3]]) *
                   round_bf16(pr.k[b * p.k_strides[0] + kvh * p.k_strides[1] + j * p.k_strides[2] + d * p.k_strides[3]]);
          const bool ok = !c.causal || j <= i + c.causal_offset;
          w[j] = ok ? dot * p.scale : -kInfF;
          mx = std::max(mx, w[j]);
        }
        if (mx == -kInfF) continue;
        float sum = 0.0f;
        for (int64_t j = 0; j < c.S; ++j) sum += w[j] = std::exp(w[j] - mx);
        for (int64_t j = 0; j < c.S; ++j) w[j] = round_bf16(w[j] / sum);
        for (int64_t d = 0; d < c.Dv; ++d) {
          float acc = 0.0f;
          for (int64_t j = 0; j < c.S; ++j)
            acc += w[j] * round_bf16(pr.v[b * p.v_strides[0] + kvh * p.v_strides[1] + j * p.v_strides[2] + d * p.v_strides[3]]);
          out[((b * c.Hq + h) * c.T + i) * c.Dv + d] = acc;
        }
      }
  return out;
}

double max_abs_error(const Problem& pr, const std::vector<double>& want) {
  double worst = 0.0;
  const Strides4& s = pr.p.out_strides;
  for (int64_t b = 0; b < pr.c.B; ++b)
    for (int64_t h = 0; h < pr.c.Hq; ++h)
      for (int64_t i = 0; i < pr.c.T; ++i)
        for (int64_t d = 0; d < pr.c.Dv; ++d) {
          const double x = pr.out[b * s[0] + h * s[1] + i * s[2] + d * s[3]];
          worst = std::max(worst, std::fabs(x - want[((b * pr.c.Hq + h) * pr.c.T + i) * pr.c.Dv + d]));
        }
  return worst;
}

// BF16 products: error against the fp64 reference at most twice that of the naive bf16
// implementation (and clearly above the fp32 kernel's, so the bf16 path really ran).
TEST(FlashAttention, Bf16ErrorAtMostTwiceNaiveBf16) {
  if (!cpu_has_avx512_bf16()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  std::vector<Case> cs;
  {
    Case c = mk("bf16_plain", 100, 300, 64, 64);
    c.B = 2;
    c.Hq = 2;
    cs.push_back(c);
  }
  {
    Case c = mk("bf16_causal_odd", 33, 257, 7, 80);
    c.Hq = 4;
    c.Hkv = 2;
    c.causal = true;
    c.causal_offset = 224;
    c.layout = Layout::kBTHD;
    cs.push_back(c);
  }
  {
    Case c = mk("bf16_strided_k", 65, 70, 33, 17);
    c.layout = Layout::kDMajor;
    cs.push_back(c);
  }
  {
    Case c = mk("bf16_decode", 1, 1000, 128, 64);
    c.B = 2;
    c.Hq = 2;
    cs.push_back(c);
  }
  std::vector<FlashBf16Engine> engines = {FlashBf16Engine::kDotProduct};
  if (cpu_has_amx_bf16()) engines.push_back(FlashBf16Engine::kAmx);
  for (const Case& c : cs) {
    Problem pr(c);
    const ref::AttentionRefForward rf = ref::attention_ref_forward(pr.p);
    flash_attention_forward(pr.p);
    const double err_fp32 = max_abs_error(pr, rf.out);
    const std::vector<double> naive = naive_bf16_attention(pr);
    double naive_vs_ref = 0.0;
    for (size_t x = 0; x < naive.size(); ++x) naive_vs_ref = std::max(naive_vs_ref, std::fabs(naive[x] - rf.out[x]));
    for (FlashBf16Engine engine : engines) {
      const char* engine_name = engine == FlashBf16Engine::kAmx ? "amx" : "vdpbf16ps";
      SCOPED_TRACE(c.name + " " + engine_name);
      pr.p.precision = FlashPrecision::kBF16;
      pr.p.bf16_engine = engine;
      flash_attention_forward(pr.p);
      pr.p.precision = FlashPrecision::kF32;
      const double err_bf16 = max_abs_error(pr, rf.out);
      std::printf("[ bf16     ] %s %s: max error vs fp64: bf16 kernel %.3g, naive bf16 %.3g, fp32 kernel %.3g\n",
                  c.name.c_str(), engine_name, err_bf16, naive_vs_ref, err_fp32);
      EXPECT_LE(err_bf16, 2.0 * naive_vs_ref) << "bf16 kernel " << err_bf16 << ", naive bf16 " << naive_vs_ref;
      EXPECT_GT(err_bf16, 10.0 * err_fp32) << "bf16 error " << err_bf16 << " vs fp32 " << err_fp32;
    }
  }
}

// FlashParams mistakes a caller can make throw heed::Error naming the problem.
TEST(FlashAttention, BadArgumentsThrow) {
  Problem pr(mk("bad", 4, 4, 4, 4));
  FlashParams p = pr.p;
  p.q_heads = 3;
  p.kv_heads = 2;
  EXPECT_THROW(flash_attention_forward(p), heed::Error);
  p = pr.p;
  p.dropout.p = 1.0f;
  EXPECT_THROW(flash_attention_forward(p), heed::Error);
  p = pr.p;
  p.k = nullptr;
  EXPECT_THROW(flash_attention_forward(p), heed::Error);
  p = pr.p;
  p.lse = nullptr;
  EXPECT_THROW(flash_attention_backward(p, pr.g), heed::Error);
  p = pr.p;
  p.mask.window_left = -2;
  EXPECT_THROW(flash_attention_forward(p), heed::Error);
  p = pr.p;
  std::vector<float> w(16);
  EXPECT_THROW(flash_attention_weights(p, {{}, 0, 5, w.data()}), heed::Error);
}

}  // namespace
}  // namespace heed::kernels::cpu
