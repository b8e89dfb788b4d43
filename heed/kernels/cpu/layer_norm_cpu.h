// CPU layer normalisation over the last dimension of a contiguous [rows, n] array.
// Rows run in parallel (static schedule), each row sequentially; the weight and bias
// gradients are summed over fixed chunks of rows, then over the chunks in order. Results do
// not depend on the thread count.
#pragma once

#include <cstdint>

namespace heed::kernels::cpu {

struct LayerNormParams {
  int64_t rows = 0;
  int64_t n = 0;  // normalised size (last dimension)
  double eps = 1e-5;
};

// y = (x - mean) * rstd * w + b per row; w and b may be null (1 and 0). Writes the row
// statistics mean[rows] and rstd[rows] = 1 / sqrt(var + eps) (biased variance).
void layer_norm_forward(const LayerNormParams& p, const float* x, const float* w, const float* b, float* y,
                        double* mean, double* rstd);
void layer_norm_forward(const LayerNormParams& p, const double* x, const double* w, const double* b, double* y,
                        double* mean, double* rstd);

// Gradients from g = dL/dy. gx, gw, gb may each be null (not wanted); w may be null.
void layer_norm_backward(const LayerNormParams& p, const float* x, const float* w, const double* mean,
                         const double* rstd, const float* g, float* gx, float* gw, float* gb);
void layer_norm_backward(const LayerNormParams& p, const double* x, const double* w, const double* mean,
                         const double* rstd, const double* g, double* gx, double* gw, double* gb);

}  // namespace heed::kernels::cpu
