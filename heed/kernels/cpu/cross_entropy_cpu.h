// CPU cross-entropy over the rows of contiguous [rows, V] logits with a fused log-softmax.
// Rows run in parallel (static schedule), each row sequentially: results do not depend on
// the thread count.
#pragma once

#include <cstdint>

namespace heed::kernels::cpu {

struct CrossEntropyParams {
  int64_t rows = 0;
  int64_t v = 0;                // classes
  double label_smoothing = 0;   // eps in [0, 1]
  int64_t ignore_index = -100;  // rows with this target contribute nothing
};

// Per-row statistics of the fused log-softmax: log p_c = (x_c - max) - log_sum.
struct RowLogSumExp {
  double max = 0;      // the row maximum (exactly representable in the logits' type)
  double log_sum = 0;  // log sum_c exp(x_c - max)
};

// loss[r] = (1 - eps) * (lse - x_t) + eps * (lse - mean_c x_c), 0 for ignored rows, with
// lse = max + log_sum written to stats[r]. Targets must already be checked.
void cross_entropy_forward(const CrossEntropyParams& p, const float* logits, const int64_t* targets, double* loss,
                           RowLogSumExp* stats);
void cross_entropy_forward(const CrossEntropyParams& p, const double* logits, const int64_t* targets, double* loss,
                           RowLogSumExp* stats);

// grad[r, c] = scale[r] * (softmax_c - (1 - eps) [c == t] - eps / V); zero rows for ignored targets.
void cross_entropy_backward(const CrossEntropyParams& p, const float* logits, const int64_t* targets,
                            const RowLogSumExp* stats, const double* scale, float* grad);
void cross_entropy_backward(const CrossEntropyParams& p, const double* logits, const int64_t* targets,
                            const RowLogSumExp* stats, const double* scale, double* grad);

}  // namespace heed::kernels::cpu
