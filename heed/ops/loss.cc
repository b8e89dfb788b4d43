// cross_entropy: checks, the fused log-softmax kernel, the reduction, and the backward rule.
#include "heed/ops/loss.h"

#include <vector>

#include "heed/autograd/graph.h"
#include "heed/kernels/cpu/cross_entropy_cpu.h"

namespace heed {

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& options) {
  HEED_CHECK(logits.defined() && (logits.dtype() == DType::kF32 || logits.dtype() == DType::kF64),
             "cross_entropy: logits must be f32 or f64, got ", logits.str());
  HEED_CHECK(logits.dim() >= 1 && logits.size(-1) >= 1, "cross_entropy: logits ", logits.str(),
             " need a non-empty class dimension (last)");
  HEED_CHECK(targets.defined() && targets.dtype() == DType::kI64, "cross_entropy: targets must be i64, got ",
             targets.str());
  const Shape batch(logits.shape().begin(), logits.shape().end() - 1);
  HEED_CHECK(targets.shape() == batch, "cross_entropy: targets ", targets.str(), " do not match logits ",
             logits.str(), " (expected targets of shape ", shape_str(batch), ")");
  const double eps = options.label_smoothing;
  HEED_CHECK(eps >= 0 && eps <= 1, "cross_entropy: label_smoothing = ", eps, ", expected in [0, 1]");
  const int64_t v = logits.size(-1);
  const int64_t rows = targets.numel();
  Tensor t = targets.raw_contiguous();  // [...] -> [rows] in memory
  const int64_t* pt = t.data<int64_t>();
  int64_t count = 0;  // non-ignored targets
  for (int64_t r = 0; r < rows; ++r) {
    if (pt[r] == options.ignore_index) continue;
    HEED_CHECK(pt[r] >= 0 && pt[r] < v, "cross_entropy: target ", pt[r], " at position ",
               position_str(batch, r), " out of range for logits ", logits.str(), " (expected in [0, ", v,
               ") or ignore_index ", options.ignore_index, ")");
    ++count;
  }
  Tensor x = logits.raw_contiguous().detach();  // [rows, V] in memory
  std::vector<double> loss(rows);
  std::vector<kernels::cpu::RowLogSumExp> stats(rows);
  const kernels::cpu::CrossEntropyParams p{.rows = rows, .v = v, .label_smoothing = eps,
                                           .ignore_index = options.ignore_index};
  dispatch_float(x.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::cross_entropy_forward(p, x.data<T>(), pt, loss.data(), stats.data());
  });
  Tensor out;
  if (options.reduction == Reduction::kNone) {
    out = Tensor::empty(batch, x.dtype());  // [...]
    dispatch_float(x.dtype(), "cross_entropy", [&](auto tag) {
      using T = decltype(tag);
      T* po = out.data<T>();
      for (int64_t r = 0; r < rows; ++r) po[r] = static_cast<T>(loss[r]);
    });
  } else {
    double total = 0;  // summed in row order: independent of the thread count
    for (double l : loss) total += l;
    if (options.reduction == Reduction::kMean) total = count > 0 ? total / static_cast<double>(count) : 0.0;
    out = Tensor::scalar(total, x.dtype());  // []
  }
  // d loss_r / d x_rc = (1 - eps) (p_c - [c == t]) + eps (p_c - 1/V) = p_c - (1 - eps) [c == t] - eps / V,
  // times dL/d loss_r: g (kSum), g / count (kMean) or g_r (kNone).
  autograd::record("cross_entropy", out, {logits},
                   [x, t, stats = std::move(stats), p, count, reduction = options.reduction](const Tensor& g) {
                     std::vector<double> scale(p.rows);
                     if (reduction == Reduction::kNone) {
                       scale = g.to_vector<double>();
                     } else {
                       double k = g.item();
                       if (reduction == Reduction::kMean) k = count > 0 ? k / static_cast<double>(count) : 0.0;
                       std::fill(scale.begin(), scale.end(), k);
                     }
                     Tensor gx = Tensor::empty(x.shape(), x.dtype());  // [..., V]
                     dispatch_float(x.dtype(), "cross_entropy_backward", [&](auto tag) {
                       using T = decltype(tag);
                       kernels::cpu::cross_entropy_backward(p, x.data<T>(), t.data<int64_t>(), stats.data(),
                                                            scale.data(), gx.data<T>());
                     });
                     return std::vector<Tensor>{gx};
                   });
  return out;
}

}  // namespace heed
