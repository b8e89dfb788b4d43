// The multi-head attention module end to end (projections + fused attention + output
// projection), d = 512, 8 heads, B = 8: forward without gradients, and forward+backward.
#include <benchmark/benchmark.h>
#include <omp.h>

#include "heed/heed.h"
#include "heed/nn/attention.h"

namespace {

using heed::Tensor;

// Args: L, causal, pass (0 forward no-grad, 1 forward+backward).
void BM_MultiHeadAttention(benchmark::State& state) {
  const int64_t b = 8, h = 8, c = 512, l = state.range(0);
  const bool causal = state.range(1) != 0, backward = state.range(2) != 0;
  heed::nn::MultiHeadAttention mha({.embed_dim = c, .num_heads = h, .seed = 1});
  mha.eval();
  Tensor x = Tensor::randn({b, l, c}, 2);  // [B, L, C]
  Tensor g = Tensor::randn({b, l, c}, 3);  // [B, L, C]
  heed::AttentionMask mask;
  mask.causal = causal;
  for (auto _ : state) {
    if (backward) {
      Tensor xi = x.detach();
      xi.requires_grad_();
      Tensor out = mha.forward(xi, xi, xi, mask).out;  // [B, L, C]
      heed::autograd::backward(out, g);
      benchmark::DoNotOptimize(xi.grad().raw_data());
      mha.zero_grad();
    } else {
      heed::autograd::NoGradGuard no_grad;
      Tensor out = mha.forward(x, x, x, mask).out;  // [B, L, C]
      benchmark::DoNotOptimize(out.raw_data());
    }
  }
  // Flops: four C x C projections (8 B L C^2) + attention core (4 B H L^2 D, halved if causal);
  // forward+backward = 3x projections + 3.5x core (the convention of bench/peers).
  const double proj = 8.0 * b * l * c * c, core = 4.0 * b * h * l * l * (c / h) * (causal ? 0.5 : 1.0);
  const double flops = backward ? 3.0 * proj + 3.5 * core : proj + core;
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["B"] = b;
  state.counters["H"] = h;
  state.counters["L"] = l;
  state.counters["D"] = c / h;
  state.counters["causal"] = causal;
  state.counters["pass"] = backward;
  state.counters["omp_threads"] = omp_get_max_threads();
}

BENCHMARK(BM_MultiHeadAttention)
    ->ArgNames({"L", "causal", "pass"})
    ->ArgsProduct({{512, 2048}, {0, 1}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
