// Composed attention: argument checks, the score functions built from matmul/linear/tanh,
// the mask bias, a safe softmax and Philox dropout (each with its backward beside it),
// and the weighted sum of values, all with grouped-query heads.
#include "heed/ops/attention.h"

#include <cmath>
#include <limits>
#include <vector>

#include "heed/autograd/graph.h"
#include "heed/kernels/cpu/elementwise.h"
#include "heed/ops/elementwise.h"
#include "heed/ops/matmul.h"
#include "heed/ops/shape.h"
#include "heed/tensor/random.h"

namespace heed {

namespace {

const char* score_name(AttentionScore s) {
  switch (s) {
    case AttentionScore::kScaledDot: return "scaled_dot";
    case AttentionScore::kDot: return "dot";
    case AttentionScore::kGeneral: return "general";
    case AttentionScore::kAdditive: return "additive";
  }
  return "?";
}

// q [B, Hq, T, Dq] and k [B, Hkv, S, Dk]: both 4-d, one floating dtype, same batch, Hq % Hkv == 0.
void check_qk(const Tensor& q, const Tensor& k, const char* op) {
  HEED_CHECK(q.defined() && k.defined(), op, ": undefined q or k");
  HEED_CHECK(q.dim() == 4 && k.dim() == 4, op, ": q ", q.str(), " and k ", k.str(),
             " expected q [B, Hq, T, Dq] and k [B, Hkv, S, Dk]");
  HEED_CHECK((q.dtype() == DType::kF32 || q.dtype() == DType::kF64) && k.dtype() == q.dtype(), op, ": q ",
             q.str(), " and k ", k.str(), " expected both f32 or both f64");
  HEED_CHECK(q.size(0) == k.size(0), op, ": q ", q.str(), " and k ", k.str(), " differ in batch size B");
  HEED_CHECK(k.size(1) > 0 && q.size(1) % k.size(1) == 0, op, ": q heads Hq = ", q.size(1), " (q ", q.str(),
             ") is not a multiple of kv heads Hkv = ", k.size(1), " (k ", k.str(), ")");
}

void check_param(const Tensor& t, const Shape& expected, const Tensor& like, const char* name, const char* op) {
  HEED_CHECK(t.defined(), op, ": ", name, " is required (expected ", shape_str(expected), ")");
  HEED_CHECK(t.shape() == expected && t.dtype() == like.dtype(), op, ": ", name, " ", t.str(), " expected ",
             dtype_name(like.dtype()), shape_str(expected));
}

// q [B, Hq, T, D] . k [B, Hkv, S, D] over D -> [B, Hq, T, S]; query head h uses kv head h / G.
Tensor grouped_qk(const Tensor& q, const Tensor& k) {
  const int64_t b = q.size(0), hq = q.size(1), t = q.size(2), hkv = k.size(1), s = k.size(2);
  Tensor kt = transpose(k, 2, 3);  // [B, Hkv, S, D] -> [B, Hkv, D, S]
  if (hq == hkv) return matmul(q, kt);  // [B, Hq, T, S]
  const int64_t g = hq / hkv;
  Tensor qg = reshape(q, {b, hkv, g * t, q.size(3)});  // [B, Hq, T, D] -> [B, Hkv, G*T, D]
  return reshape(matmul(qg, kt), {b, hq, t, s});        // [B, Hkv, G*T, S] -> [B, Hq, T, S]
}

// Dropout on contiguous [B, Hq, T, S] weights with the shared Philox contract (flat index).
Tensor attention_dropout(const Tensor& weights, double p, uint64_t seed, uint64_t stream) {
  Tensor w = weights.raw_contiguous();  // [B, Hq, T, S], contiguous
  const float pf = static_cast<float>(p);
  auto apply = [pf, seed, stream](const Tensor& x) {  // x contiguous [B, Hq, T, S]
    Tensor out = Tensor::empty(x.shape(), x.dtype());  // [B, Hq, T, S]
    dispatch_float(x.dtype(), "attention_dropout", [&](auto tag) {
      using T = decltype(tag);
      const T keep_scale = static_cast<T>(1.0 / (1.0 - static_cast<double>(pf)));
      const T* px = x.data<T>();
      T* po = out.data<T>();
      const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > kernels::cpu::kParallelGrain)
      for (int64_t e = 0; e < n; ++e)
        po[e] = random::dropout_keep(seed, stream, static_cast<uint64_t>(e), pf) ? px[e] * keep_scale : T(0);
    });
    return out;
  };
  Tensor out = apply(w);  // [B, Hq, T, S]
  // The same keep mask and scale apply to the gradient: grad_w = grad_out * mask / (1 - p).
  autograd::record("attention_dropout", out, {weights}, [apply](const Tensor& g) {
    return std::vector<Tensor>{apply(g.raw_contiguous())};
  });
  return out;
}

// heads within [0, Hq) and rows [row_begin, row_end) within [0, T] (row_end = -1: T).
void check_weights_selection(const WeightsSelection& sel, const AttentionDims& dims, const char* op) {
  for (int64_t h : sel.heads)
    HEED_CHECK(0 <= h && h < dims.heads, op, ": weights_selection head ", h, " expected within [0, ", dims.heads,
               ") (the query heads)");
  const int64_t end = sel.end(dims.q_len);
  HEED_CHECK(sel.row_end >= -1 && 0 <= sel.row_begin && sel.row_begin <= end && end <= dims.q_len, op,
             ": weights_selection rows [", sel.row_begin, ", ", sel.row_end, ") expected within [0, ", dims.q_len,
             "] (row_end = -1: to the last query row)");
}

// The chosen heads and rows of weights [B, Hq, T, S] -> [B, heads, rows, S] (a copy when
// not everything is chosen).
Tensor select_weights(const Tensor& weights, const WeightsSelection& sel) {
  Tensor w = weights;
  if (!sel.heads.empty())  // [B, Hq, T, S] -> [B, heads, T, S]
    w = index_select(w, 1, Tensor::from_vector(sel.heads, {static_cast<int64_t>(sel.heads.size())}));
  const int64_t end = sel.end(w.size(2));
  if (sel.row_begin != 0 || end != w.size(2)) w = contiguous(slice(w, 2, sel.row_begin, end));  // [B, heads, rows, S]
  return w;
}

}  // namespace

Tensor safe_softmax(const Tensor& logits) {
  HEED_CHECK(logits.defined() && (logits.dtype() == DType::kF32 || logits.dtype() == DType::kF64) &&
                 logits.dim() >= 1,
             "safe_softmax: expected a f32 or f64 tensor with at least one dimension, got ",
             logits.defined() ? logits.str() : "undefined");
  Tensor x = logits.raw_contiguous();                // [..., N]
  Tensor out = Tensor::empty(x.shape(), x.dtype());  // [..., N]
  const int64_t n = x.size(-1);
  const int64_t rows = n > 0 ? x.numel() / n : 0;
  dispatch_float(x.dtype(), "safe_softmax", [&](auto tag) {
    using T = decltype(tag);
    const T* px = x.data<T>();
    T* po = out.data<T>();
#pragma omp parallel for schedule(static) if (x.numel() > kernels::cpu::kParallelGrain)
    for (int64_t r = 0; r < rows; ++r) {
      const T* in = px + r * n;
      T* o = po + r * n;
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < n; ++j) m = in[j] > m ? in[j] : m;
      if (m == -std::numeric_limits<T>::infinity()) {  // every key masked: zero weights, not NaN
        for (int64_t j = 0; j < n; ++j) o[j] = T(0);
        continue;
      }
      double total = 0;
      for (int64_t j = 0; j < n; ++j) {
        o[j] = std::exp(in[j] - m);
        total += o[j];
      }
      const T inv = static_cast<T>(1.0 / total);
      for (int64_t j = 0; j < n; ++j) o[j] *= inv;
    }
  });
  // grad_x = p * (g - sum_j g_j p_j) per row; a zero row of p passes zero gradient.
  autograd::record("safe_softmax", out, {logits}, [p = out.detach(), n, rows](const Tensor& g_in) {
    Tensor g = g_in.raw_contiguous();                 // [..., N]
    Tensor gx = Tensor::empty(p.shape(), p.dtype());  // [..., N]
    dispatch_float(p.dtype(), "safe_softmax_backward", [&](auto tag) {
      using T = decltype(tag);
      const T* pp = p.data<T>();
      const T* pg = g.data<T>();
      T* po = gx.data<T>();
#pragma omp parallel for schedule(static) if (p.numel() > kernels::cpu::kParallelGrain)
      for (int64_t r = 0; r < rows; ++r) {
        const T* pr = pp + r * n;
        const T* gr = pg + r * n;
        double dot = 0;
        for (int64_t j = 0; j < n; ++j) dot += static_cast<double>(gr[j]) * pr[j];
        const T d = static_cast<T>(dot);
        for (int64_t j = 0; j < n; ++j) po[r * n + j] = pr[j] * (gr[j] - d);
      }
    });
    return std::vector<Tensor>{gx};
  });
  return out;
}

Tensor dot_scores(const Tensor& q, const Tensor& k, double scale) {
  check_qk(q, k, "dot_scores");
  HEED_CHECK(q.size(3) == k.size(3), "dot_scores: q ", q.str(), " and k ", k.str(),
             " differ in head size (expected Dq == Dk)");
  // The scale goes on q ([B, Hq, T, D]), cheaper than a pass over the [B, Hq, T, S] scores.
  return grouped_qk(scale == 1.0 ? q : mul(q, scale), k);  // [B, Hq, T, S]
}

Tensor general_scores(const Tensor& q, const Tensor& k, const Tensor& weight, double scale) {
  check_qk(q, k, "general_scores");
  check_param(weight, {q.size(3), k.size(3)}, q, "weight W [Dq, Dk]", "general_scores");
  Tensor qw = matmul(q, weight);                            // [B, Hq, T, Dq] @ [Dq, Dk] -> [B, Hq, T, Dk]
  return grouped_qk(scale == 1.0 ? qw : mul(qw, scale), k);  // [B, Hq, T, S]
}

Tensor additive_scores(const Tensor& q, const Tensor& k, const Tensor& query_weight, const Tensor& key_weight,
                       const Tensor& v, double scale) {
  const char* op = "additive_scores";
  check_qk(q, k, op);
  HEED_CHECK(query_weight.defined() && query_weight.dim() == 2, op, ": query_weight W1 ",
             query_weight.defined() ? query_weight.str() : "undefined", " expected [A, Dq]");
  const int64_t a = query_weight.size(0);
  check_param(query_weight, {a, q.size(3)}, q, "query_weight W1 [A, Dq]", op);
  check_param(key_weight, {a, k.size(3)}, q, "key_weight W2 [A, Dk]", op);
  check_param(v, {a}, q, "v [A]", op);
  const int64_t b = q.size(0), hq = q.size(1), t = q.size(2), hkv = k.size(1), s = k.size(2), g = hq / hkv;
  Tensor wq = linear(q, query_weight);               // [B, Hq, T, Dq] -> [B, Hq, T, A]
  Tensor wk = linear(k, key_weight);                 // [B, Hkv, S, Dk] -> [B, Hkv, S, A]
  wq = reshape(wq, {b, hkv, g, t, 1, a});            // [B, Hq, T, A] -> [B, Hkv, G, T, 1, A]
  wk = reshape(wk, {b, hkv, 1, 1, s, a});            // [B, Hkv, S, A] -> [B, Hkv, 1, 1, S, A]
  Tensor hidden = tanh(add(wq, wk));                 // [B, Hkv, G, T, S, A]
  Tensor scaled_v = scale == 1.0 ? v : mul(v, scale);  // [A]
  Tensor scores = matmul(hidden, scaled_v);            // [B, Hkv, G, T, S, A] @ [A] -> [B, Hkv, G, T, S]
  return reshape(scores, {b, hq, t, s});               // [B, Hkv, G, T, S] -> [B, Hq, T, S]
}

Tensor attention_scores(const Tensor& q, const Tensor& k, const AttentionOptions& o) {
  check_qk(q, k, "attention");
  HEED_CHECK(o.softcap >= 0 && std::isfinite(o.softcap), "attention: softcap = ", o.softcap,
             " expected >= 0 (0 = none)");
  HEED_CHECK(!o.scale || std::isfinite(*o.scale), "attention: scale = ", *o.scale, " expected a finite number");
  Tensor s;
  switch (o.score) {
    case AttentionScore::kScaledDot:
      s = dot_scores(q, k, o.scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(3)))));  // [B, Hq, T, S]
      break;
    case AttentionScore::kDot:
      s = dot_scores(q, k, o.scale.value_or(1.0));  // [B, Hq, T, S]
      break;
    case AttentionScore::kGeneral:
      s = general_scores(q, k, o.params.weight, o.scale.value_or(1.0));  // [B, Hq, T, S]
      break;
    case AttentionScore::kAdditive:
      s = additive_scores(q, k, o.params.query_weight, o.params.key_weight, o.params.v,
                          o.scale.value_or(1.0));  // [B, Hq, T, S]
      break;
    default: fail("attention: unknown score function ", static_cast<int>(o.score));
  }
  if (o.softcap > 0) s = mul(tanh(mul(s, 1.0 / o.softcap)), o.softcap);  // [B, Hq, T, S]
  return s;
}

Tensor grouped_weighted_sum(const Tensor& weights, const Tensor& v) {
  HEED_CHECK(weights.defined() && v.defined() && weights.dim() == 4 && v.dim() == 4 &&
                 weights.size(0) == v.size(0) && weights.size(3) == v.size(2) && v.size(1) > 0 &&
                 weights.size(1) % v.size(1) == 0,
             "grouped_weighted_sum: weights ", weights.defined() ? weights.str() : "undefined", " and v ",
             v.defined() ? v.str() : "undefined", " expected weights [B, Hq, T, S] and v [B, Hkv, S, Dv], Hq % Hkv == 0");
  const int64_t b = weights.size(0), hq = weights.size(1), t = weights.size(2), s = weights.size(3);
  const int64_t hkv = v.size(1), dv = v.size(3);
  if (hq == hkv) return matmul(weights, v);  // [B, Hq, T, S] @ [B, Hq, S, Dv] -> [B, Hq, T, Dv]
  const int64_t g = hq / hkv;
  Tensor wg = reshape(weights, {b, hkv, g * t, s});  // [B, Hq, T, S] -> [B, Hkv, G*T, S]
  return reshape(matmul(wg, v), {b, hq, t, dv});     // [B, Hkv, G*T, Dv] -> [B, Hq, T, Dv]
}

AttentionResult attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) {
  check_qk(q, k, "attention");
  HEED_CHECK(v.defined() && v.dim() == 4 && v.dtype() == q.dtype(), "attention: v ",
             v.defined() ? v.str() : "undefined", " expected ", dtype_name(q.dtype()), " [B, Hkv, S, Dv]");
  HEED_CHECK(v.size(0) == k.size(0) && v.size(1) == k.size(1) && v.size(2) == k.size(2), "attention: k ", k.str(),
             " and v ", v.str(), " expected the same [B, Hkv, S]");
  HEED_CHECK(o.dropout_p >= 0 && o.dropout_p < 1, "attention: dropout_p = ", o.dropout_p, " expected in [0, 1)");
  if (o.score == AttentionScore::kScaledDot || o.score == AttentionScore::kDot)
    HEED_CHECK(q.size(3) == k.size(3), "attention (", score_name(o.score), "): q ", q.str(), " and k ", k.str(),
               " differ in head size (expected Dq == Dk)");
  const AttentionDims dims{q.size(0), q.size(1), q.size(2), k.size(2)};
  check_attention_mask(o.mask, dims, q.dtype(), "attention");
  if (o.need_weights) check_weights_selection(o.weights_selection, dims, "attention");
  if (o.path != AttentionPath::kComposed) {
    const bool applies = fused_attention_applies(q, o);
    HEED_CHECK(applies || o.path == AttentionPath::kAuto, "attention: the fused path needs f32 q/k/v, a dot or "
               "scaled-dot score, no softcap and no need_scores (got ", q.str(), ", score ", score_name(o.score), ")");
    if (applies) return fused_attention(q, k, v, o);
  }

  AttentionResult r;
  Tensor scores = attention_scores(q, k, o);                               // [B, Hq, T, S]
  Tensor bias = attention_bias(o.mask, dims, q.dtype(), "attention");      // [B|1, Hq|1, T, S] or none
  Tensor logits = bias.defined() ? add(scores, bias) : scores;             // [B, Hq, T, S]
  Tensor weights = o.weighting == AttentionWeighting::kSoftmax ? safe_softmax(logits)  // [B, Hq, T, S]
                                                               : sigmoid(logits);
  Tensor used = weights;
  if (o.training && o.dropout_p > 0)
    used = attention_dropout(weights, o.dropout_p, o.dropout_seed, o.dropout_stream);  // [B, Hq, T, S]
  r.out = grouped_weighted_sum(used, v);  // [B, Hq, T, Dv]
  if (o.need_weights) r.weights = select_weights(weights, o.weights_selection);
  if (o.need_scores) r.scores = scores;
  return r;
}

}  // namespace heed
