// Naive double-precision attention (forward and backward) used as the reference in tests.
#include "heed/kernels/ref/attention_ref.h"

#include <cmath>
#include <limits>

#include "heed/tensor/random.h"

namespace heed::kernels::ref {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

bool structurally_allowed(const cpu::FlashParams& p, int64_t b, int64_t i, int64_t j) {
  const cpu::FlashMasks& m = p.mask;
  if (m.key_lengths != nullptr && j >= m.key_lengths[b]) return false;
  if (m.causal && j > i + m.causal_offset) return false;
  if (m.window_left >= 0 && j < i + m.causal_offset - m.window_left) return false;
  if (m.window_right >= 0 && j > i + m.causal_offset + m.window_right) return false;
  return true;
}

int64_t at(const cpu::Strides4& s, int64_t a, int64_t b, int64_t c, int64_t d) {
  return a * s[0] + b * s[1] + c * s[2] + d * s[3];
}

// Everything the backward needs about one problem: weights P [B, Hq, T, S] (before
// dropout), the dropout factors, and which scores are allowed.
struct Forward {
  AttentionRefForward result;
  std::vector<double> drop;     // [B, Hq, T, S]: keep / (1 - p), or 0
};

template <class T>
Forward forward_core(const cpu::FlashParams& p, const T* q, const T* k, const T* v,
                        const T* am) {
  const int64_t B = p.batch, Hq = p.q_heads, T_ = p.q_len, S = p.kv_len, D = p.head_dim,
                Dv = p.v_head_dim, group = p.q_heads / p.kv_heads;
  const bool sigmoid = p.weighting == cpu::AttentionWeighting::kSigmoid;
  Forward f;
  f.result.out.assign(B * Hq * T_ * Dv, 0.0);
  f.result.lse.assign(B * Hq * T_, -kInf);
  f.result.weights.assign(B * Hq * T_ * S, 0.0);
  f.drop.assign(B * Hq * T_ * S, 1.0);
  std::vector<double> z(S);
  std::vector<bool> ok(S);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t kvh = h / group;
      for (int64_t i = 0; i < T_; ++i) {
        const int64_t row = (b * Hq + h) * T_ + i;
        double* w = &f.result.weights[row * S];
        for (int64_t j = 0; j < S; ++j) {
          double dot = 0.0;
          for (int64_t d = 0; d < D; ++d)
            dot += static_cast<double>(q[at(p.q_strides, b, h, i, d)]) *
                   static_cast<double>(k[at(p.k_strides, b, kvh, j, d)]);
          z[j] = static_cast<double>(p.scale) * dot;
          if (am != nullptr) z[j] += static_cast<double>(am[at(p.mask.additive_strides, b, h, i, j)]);
          ok[j] = structurally_allowed(p, b, i, j) &&
                  (p.mask.bool_mask == nullptr || p.mask.bool_mask[at(p.mask.bool_strides, b, h, i, j)] != 0) &&
                  z[j] != -kInf;
        }
        if (sigmoid) {
          for (int64_t j = 0; j < S; ++j) w[j] = ok[j] ? 1.0 / (1.0 + std::exp(-z[j])) : 0.0;
        } else {
          double mx = -kInf;
          for (int64_t j = 0; j < S; ++j)
            if (ok[j] && z[j] > mx) mx = z[j];
          if (mx == -kInf) continue;  // fully masked row: zero output, lse = -inf
          double sum = 0.0;
          for (int64_t j = 0; j < S; ++j) sum += ok[j] ? std::exp(z[j] - mx) : 0.0;
          for (int64_t j = 0; j < S; ++j) w[j] = ok[j] ? std::exp(z[j] - mx) / sum : 0.0;
          f.result.lse[row] = mx + std::log(sum);
        }
        for (int64_t j = 0; j < S; ++j) {
          double factor = 1.0;
          if (p.dropout.p > 0.0f) {
            const uint64_t index = static_cast<uint64_t>(row * S + j);
            factor = heed::random::dropout_keep(p.dropout.seed, p.dropout.stream, index, p.dropout.p)
                         ? 1.0 / (1.0 - static_cast<double>(p.dropout.p))
                         : 0.0;
          }
          f.drop[row * S + j] = factor;
          const double wd = w[j] * factor;
          if (wd == 0.0) continue;
          for (int64_t d = 0; d < Dv; ++d)
            f.result.out[row * Dv + d] += wd * static_cast<double>(v[at(p.v_strides, b, kvh, j, d)]);
        }
      }
    }
  }
  return f;
}

template <class T>
AttentionRefBackward backward_core(const cpu::FlashParams& p, const T* q, const T* k, const T* v,
                                   const T* am, const T* dout, const cpu::Strides4& ds) {
  const Forward f = forward_core(p, q, k, v, am);
  const int64_t B = p.batch, Hq = p.q_heads, Hkv = p.kv_heads, T_ = p.q_len, S = p.kv_len,
                D = p.head_dim, Dv = p.v_head_dim, group = p.q_heads / p.kv_heads;
  const bool sigmoid = p.weighting == cpu::AttentionWeighting::kSigmoid;
  const double scale = p.scale;
  AttentionRefBackward g;
  g.grad_q.assign(B * Hq * T_ * D, 0.0);
  g.grad_k.assign(B * Hkv * S * D, 0.0);
  g.grad_v.assign(B * Hkv * S * Dv, 0.0);
  g.grad_scores.assign(B * Hq * T_ * S, 0.0);
  std::vector<double> dp(S);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t kvh = h / group;
      for (int64_t i = 0; i < T_; ++i) {
        const int64_t row = (b * Hq + h) * T_ + i;
        const double* w = &f.result.weights[row * S];
        // rowsum(dO * O)
        double di = 0.0;
        for (int64_t d = 0; d < Dv; ++d)
          di += static_cast<double>(dout[at(ds, b, h, i, d)]) * f.result.out[row * Dv + d];
        for (int64_t j = 0; j < S; ++j) {
          const double factor = f.drop[row * S + j];
          double dpd = 0.0;  // d loss / d(dropped weight)
          for (int64_t d = 0; d < Dv; ++d)
            dpd += static_cast<double>(dout[at(ds, b, h, i, d)]) *
                   static_cast<double>(v[at(p.v_strides, b, kvh, j, d)]);
          dp[j] = dpd * factor;
          for (int64_t d = 0; d < Dv; ++d)
            g.grad_v[((b * Hkv + kvh) * S + j) * Dv + d] +=
                w[j] * factor * static_cast<double>(dout[at(ds, b, h, i, d)]);
        }
        for (int64_t j = 0; j < S; ++j) {
          const double dz = sigmoid ? dp[j] * w[j] * (1.0 - w[j]) : w[j] * (dp[j] - di);
          g.grad_scores[row * S + j] = dz;
          if (dz == 0.0) continue;
          for (int64_t d = 0; d < D; ++d) {
            g.grad_q[row * D + d] += scale * dz * static_cast<double>(k[at(p.k_strides, b, kvh, j, d)]);
            g.grad_k[((b * Hkv + kvh) * S + j) * D + d] +=
                scale * dz * static_cast<double>(q[at(p.q_strides, b, h, i, d)]);
          }
        }
      }
    }
  }
  return g;
}

}  // namespace

AttentionRefForward attention_ref_forward(const cpu::FlashParams& p) {
  return forward_core<float>(p, p.q, p.k, p.v, p.mask.additive_mask).result;
}

AttentionRefBackward attention_ref_backward(const cpu::FlashParams& p, const float* grad_out,
                                            const cpu::Strides4& grad_out_strides) {
  return backward_core<float>(p, p.q, p.k, p.v, p.mask.additive_mask, grad_out, grad_out_strides);
}

AttentionRefForward attention_ref_forward(const cpu::FlashParams& p, const double* q,
                                          const double* k, const double* v,
                                          const double* additive_mask) {
  return forward_core<double>(p, q, k, v, additive_mask).result;
}

AttentionRefBackward attention_ref_backward(const cpu::FlashParams& p, const double* q,
                                            const double* k, const double* v,
                                            const double* additive_mask, const double* grad_out,
                                            const cpu::Strides4& grad_out_strides) {
  return backward_core<double>(p, q, k, v, additive_mask, grad_out, grad_out_strides);
}

void reduce_to_mask_layout(const cpu::FlashParams& p, const std::vector<double>& grad_scores,
                           double* out) {
  const cpu::Strides4& s = p.mask.additive_strides;
  const int64_t B = p.batch, Hq = p.q_heads, T_ = p.q_len, S = p.kv_len;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < T_; ++i)
        for (int64_t j = 0; j < S; ++j) out[at(s, b, h, i, j)] = 0.0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < T_; ++i)
        for (int64_t j = 0; j < S; ++j)
          out[at(s, b, h, i, j)] += grad_scores[((b * Hq + h) * T_ + i) * S + j];
}

}  // namespace heed::kernels::ref
