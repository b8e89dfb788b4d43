// Naive double-precision reference of the composed attention family (tests only).
#include "heed/kernels/ref/attention_ref_composed.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "heed/tensor/random.h"

namespace heed::kernels::ref {

ComposedAttentionRefResult composed_attention_ref(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                                  const ComposedAttentionRef& p) {
  const int64_t nb = q_in.size(0), hq = q_in.size(1), t_len = q_in.size(2), dq = q_in.size(3);
  const int64_t hkv = k_in.size(1), s_len = k_in.size(2), dk = k_in.size(3), dv = v_in.size(3);
  const int64_t group = hq / hkv;
  const std::vector<double> q = q_in.to_vector<double>(), k = k_in.to_vector<double>(), v = v_in.to_vector<double>();
  const Shape full{nb, hq, t_len, s_len};
  std::vector<double> bool_mask, additive, w, w1, w2, va;
  std::vector<int64_t> lengths;
  if (p.bool_mask.defined()) bool_mask = p.bool_mask.raw_expand(full).to_vector<double>();
  if (p.additive_mask.defined()) additive = p.additive_mask.raw_expand(full).to_vector<double>();
  if (p.key_lengths.defined()) lengths = p.key_lengths.to_vector<int64_t>();
  if (p.weight.defined()) w = p.weight.to_vector<double>();
  if (p.query_weight.defined()) w1 = p.query_weight.to_vector<double>();
  if (p.key_weight.defined()) w2 = p.key_weight.to_vector<double>();
  if (p.v_weight.defined()) va = p.v_weight.to_vector<double>();
  const int64_t a_len = static_cast<int64_t>(va.size());

  std::vector<double> scores(nb * hq * t_len * s_len), weights(scores.size()), out(nb * hq * t_len * dv, 0.0);
  const double neg_inf = -std::numeric_limits<double>::infinity();
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t h = 0; h < hq; ++h) {
      const int64_t kh = h / group;
      for (int64_t i = 0; i < t_len; ++i) {
        const double* qi = &q[((b * hq + h) * t_len + i) * dq];
        std::vector<double> logit(s_len);
        for (int64_t j = 0; j < s_len; ++j) {
          const double* kj = &k[((b * hkv + kh) * s_len + j) * dk];
          double sc = 0;
          if (p.score == RefScore::kDot) {
            for (int64_t d = 0; d < dq; ++d) sc += qi[d] * kj[d];
          } else if (p.score == RefScore::kGeneral) {
            for (int64_t d = 0; d < dq; ++d)
              for (int64_t e = 0; e < dk; ++e) sc += qi[d] * w[d * dk + e] * kj[e];
          } else {
            for (int64_t a = 0; a < a_len; ++a) {
              double hid = 0;
              for (int64_t d = 0; d < dq; ++d) hid += w1[a * dq + d] * qi[d];
              for (int64_t e = 0; e < dk; ++e) hid += w2[a * dk + e] * kj[e];
              sc += va[a] * std::tanh(hid);
            }
          }
          sc *= p.scale;
          if (p.softcap > 0) sc = p.softcap * std::tanh(sc / p.softcap);
          const int64_t at = ((b * hq + h) * t_len + i) * s_len + j;
          scores[at] = sc;
          const int64_t diag = i + p.causal_offset;
          bool allowed = true;
          if (!lengths.empty() && j >= lengths[b]) allowed = false;
          if (p.causal && j > diag) allowed = false;
          if (p.window_left >= 0 && j < diag - p.window_left) allowed = false;
          if (p.window_right >= 0 && j > diag + p.window_right) allowed = false;
          if (!bool_mask.empty() && bool_mask[at] == 0) allowed = false;
          logit[j] = allowed ? sc + (additive.empty() ? 0.0 : additive[at]) : neg_inf;
        }
        double* wi = &weights[((b * hq + h) * t_len + i) * s_len];
        if (p.sigmoid) {
          for (int64_t j = 0; j < s_len; ++j) wi[j] = logit[j] == neg_inf ? 0.0 : 1.0 / (1.0 + std::exp(-logit[j]));
        } else {
          double m = neg_inf;
          for (int64_t j = 0; j < s_len; ++j) m = std::max(m, logit[j]);
          double total = 0;
          for (int64_t j = 0; j < s_len; ++j) total += m == neg_inf ? 0.0 : std::exp(logit[j] - m);
          for (int64_t j = 0; j < s_len; ++j) wi[j] = m == neg_inf ? 0.0 : std::exp(logit[j] - m) / total;
        }
        double* oi = &out[((b * hq + h) * t_len + i) * dv];
        for (int64_t j = 0; j < s_len; ++j) {
          double wj = wi[j];
          if (p.dropout_p > 0) {
            const uint64_t index = static_cast<uint64_t>(((b * hq + h) * t_len + i) * s_len + j);
            const bool keep = random::dropout_keep(p.dropout_seed, p.dropout_stream, index,
                                                   static_cast<float>(p.dropout_p));
            wj = keep ? wj / (1.0 - static_cast<double>(static_cast<float>(p.dropout_p))) : 0.0;
          }
          const double* vj = &v[((b * hkv + kh) * s_len + j) * dv];
          for (int64_t d = 0; d < dv; ++d) oi[d] += wj * vj[d];
        }
      }
    }
  ComposedAttentionRefResult r;
  r.out = Tensor::from_vector(out, {nb, hq, t_len, dv});
  r.weights = Tensor::from_vector(weights, full);
  r.scores = Tensor::from_vector(scores, full);
  return r;
}

}  // namespace heed::kernels::ref
