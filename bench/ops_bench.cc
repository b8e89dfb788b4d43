// Op benchmarks: heed::matmul against a direct cblas_sgemm in the same binary (the issue's
// target is heed >= 80% of BLAS), softmax / layer_norm / cross_entropy throughput, and
// elementwise add against a plain loop. Run: ./build/heed_bench --benchmark_filter=...
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <vector>

#include "heed/heed.h"
#include "heed/kernels/cpu/gemm_amx.h"
#include "heed/kernels/cpu/gemm_packed.h"
#include "heed/kernels/cpu/gemm_small.h"

namespace {

using heed::Tensor;

void set_flops(benchmark::State& state, double m, double n, double k) {
  state.counters["GFLOP/s"] = benchmark::Counter(2 * m * n * k * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// C = A B through heed (allocates C, as a caller of heed::matmul does).
void BM_HeedMatmul(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  Tensor a = Tensor::randn({m, k}, 1), b = Tensor::randn({k, n}, 2);
  for (auto _ : state) benchmark::DoNotOptimize(heed::matmul(a, b).raw_data());
  set_flops(state, m, n, k);
}

// The same product straight through OpenBLAS with its own threading, into a reused C.
void BM_BlasSgemm(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  Tensor a = Tensor::randn({m, k}, 1), b = Tensor::randn({k, n}, 2), c = Tensor::zeros({m, n});
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), 1.0f, a.data<float>(), static_cast<int>(k), b.data<float>(), static_cast<int>(n),
                0.0f, c.data<float>(), static_cast<int>(n));
    benchmark::ClobberMemory();
  }
  set_flops(state, m, n, k);
}

void gemm_shapes(benchmark::internal::Benchmark* b) {
  for (int64_t n : {256, 512, 1024, 2048}) b->Args({n, n, n});
  b->Args({64 * 24, 256, 1024});  // [B*T, C] x [C, 4C]: a Transformer feed-forward layer
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK(BM_HeedMatmul)->Apply(gemm_shapes);
BENCHMARK(BM_BlasSgemm)->Apply(gemm_shapes);

// Linear-layer products at inference, C[m, n] = A[m, k] W[n, k]^T with few rows m (decoding
// steps, one short sequence): heed's no-pack kernel (kernels/cpu/gemm_small.h) against
// cblas_sgemm on one thread, same operands, in the same binary. Args: m, k, n, kernel (0 BLAS, 1 heed).
void BM_SmallRowsNT(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  const bool heed_kernel = state.range(3) != 0;
  if (heed_kernel && !heed::kernels::cpu::gemm_nt_small_available()) {
    state.SkipWithError("no AVX-512");
    return;
  }
  Tensor a = Tensor::randn({m, k}, 1), w = Tensor::randn({n, k}, 2), c = Tensor::zeros({m, n});
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  for (auto _ : state) {
    if (heed_kernel)
      heed::kernels::cpu::gemm_nt_small(m, n, k, 1.0f, a.data<float>(), k, w.data<float>(), k, 0.0f, c.data<float>(), n);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n),
                  static_cast<int>(k), 1.0f, a.data<float>(), static_cast<int>(k), w.data<float>(),
                  static_cast<int>(k), 0.0f, c.data<float>(), static_cast<int>(n));
    benchmark::ClobberMemory();
  }
  omp_set_num_threads(saved);
  set_flops(state, m, n, k);
  state.SetLabel(heed_kernel ? "heed no-pack" : "openblas");
}
BENCHMARK(BM_SmallRowsNT)
    ->ArgsProduct({{1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128}, {256}, {1024}, {0, 1}})
    ->ArgsProduct({{1, 8, 24, 64}, {1024}, {256}, {0, 1}})
    ->ArgsProduct({{1, 8, 24, 64}, {256}, {768}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// The products of a Transformer training step (G2P: 1536 token rows, d = 256, ff 1024):
// forward x W^T, backward dY W and dY^T x, on heed's packed kernel (kernels/cpu/gemm_packed.h)
// and on cblas_sgemm, one thread, same operands, same binary; C is written whole (beta = 0).
// Args: m, n, k, trans_a, trans_b, kernel (0 OpenBLAS, 1 heed's f32 kernel, 2 heed's bf16
// kernel on AMX tiles; the two heed kernels share one signature).
void BM_TrainingGemm(benchmark::State& state) {
  const int64_t m = state.range(0), n = state.range(1), k = state.range(2);
  const bool ta = state.range(3) != 0, tb = state.range(4) != 0;
  const int64_t kernel = state.range(5);
  if (kernel == 1 && !heed::kernels::cpu::gemm_packed_available()) {
    state.SkipWithError("no AVX-512");
    return;
  }
  if (kernel == 2 && !heed::kernels::cpu::gemm_amx_available()) {
    state.SkipWithError("no AMX-BF16");
    return;
  }
  const auto heed_gemm = kernel == 2 ? &heed::kernels::cpu::gemm_amx_bf16 : &heed::kernels::cpu::gemm_packed;
  Tensor a = Tensor::randn({m * k}, 1), b = Tensor::randn({k * n}, 2), c = Tensor::zeros({m, n});
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  for (auto _ : state) {
    if (kernel != 0)
      heed_gemm(ta, tb, m, n, k, 1.0f, a.data<float>(), lda, b.data<float>(), ldb, 0.0f, c.data<float>(), n, {});
    else
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
                  static_cast<int>(n), static_cast<int>(k), 1.0f, a.data<float>(), static_cast<int>(lda),
                  b.data<float>(), static_cast<int>(ldb), 0.0f, c.data<float>(), static_cast<int>(n));
    benchmark::ClobberMemory();
  }
  omp_set_num_threads(saved);
  set_flops(state, m, n, k);
  state.SetLabel(kernel == 2 ? "heed amx bf16" : kernel == 1 ? "heed packed" : "openblas");
}
BENCHMARK(BM_TrainingGemm)
    ->ArgNames({"m", "n", "k", "ta", "tb", "heed"})
    ->ArgsProduct({{1536}, {256, 768, 1024}, {256}, {0}, {1}, {0, 1, 2}})  // x W^T
    ->ArgsProduct({{1536}, {256}, {1024}, {0}, {1}, {0, 1, 2}})            // x W^T, the ff output layer
    ->ArgsProduct({{1536}, {256, 1024}, {1024, 256}, {0}, {0}, {0, 1, 2}})  // dY W
    ->ArgsProduct({{256, 768, 1024}, {256, 1024}, {1536}, {1}, {0}, {0, 1, 2}})  // dW = dY^T x
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void set_rows(benchmark::State& state, int64_t elements, int64_t bytes_per_element) {
  state.SetItemsProcessed(state.iterations() * elements);
  state.SetBytesProcessed(state.iterations() * elements * bytes_per_element);
}

constexpr int64_t kRows = 4096, kCols = 1024;

void BM_Softmax(benchmark::State& state) {
  Tensor x = Tensor::randn({kRows, kCols}, 1);
  for (auto _ : state) benchmark::DoNotOptimize(heed::softmax(x, -1).raw_data());
  set_rows(state, kRows * kCols, 8);  // read x, write y
}
BENCHMARK(BM_Softmax)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_SoftmaxBackward(benchmark::State& state) {
  Tensor x = Tensor::randn({kRows, kCols}, 1), g = Tensor::randn({kRows, kCols}, 2);
  x.requires_grad_();
  for (auto _ : state) {
    Tensor y = heed::softmax(x, -1);
    heed::autograd::backward(y, g);
    x.zero_grad();
  }
  set_rows(state, kRows * kCols, 20);  // forward 8 + backward (y, g, grad x) 12
}
BENCHMARK(BM_SoftmaxBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LayerNorm(benchmark::State& state) {
  Tensor x = Tensor::randn({kRows, kCols}, 1), w = Tensor::ones({kCols}), b = Tensor::zeros({kCols});
  for (auto _ : state) benchmark::DoNotOptimize(heed::layer_norm(x, kCols, w, b).raw_data());
  set_rows(state, kRows * kCols, 8);
}
BENCHMARK(BM_LayerNorm)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LayerNormBackward(benchmark::State& state) {
  Tensor x = Tensor::randn({kRows, kCols}, 1), w = Tensor::ones({kCols}), b = Tensor::zeros({kCols});
  Tensor g = Tensor::randn({kRows, kCols}, 2);
  x.requires_grad_();
  w.requires_grad_();
  b.requires_grad_();
  for (auto _ : state) {
    heed::autograd::backward(heed::layer_norm(x, kCols, w, b), g);
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
  }
  set_rows(state, kRows * kCols, 20);
}
BENCHMARK(BM_LayerNormBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_CrossEntropy(benchmark::State& state) {
  Tensor logits = Tensor::randn({kRows, kCols}, 1);
  logits.requires_grad_();
  std::vector<int64_t> t(kRows);
  for (int64_t i = 0; i < kRows; ++i) t[i] = (i * 37) % kCols;
  Tensor targets = Tensor::from_vector(t, {kRows});
  for (auto _ : state) {
    heed::cross_entropy(logits, targets, {.label_smoothing = 0.1}).backward();
    logits.zero_grad();
  }
  set_rows(state, kRows * kCols, 12);  // forward reads logits; backward reads them and writes the gradient
}
BENCHMARK(BM_CrossEntropy)->Unit(benchmark::kMillisecond)->UseRealTime();

// Elementwise: heed::add against a plain loop over the same data, with a fresh output each
// time (as heed allocates) and into a reused one.
void BM_HeedAdd(benchmark::State& state) {
  Tensor a = Tensor::randn({kRows, kCols}, 1), b = Tensor::randn({kRows, kCols}, 2);
  for (auto _ : state) benchmark::DoNotOptimize(heed::add(a, b).raw_data());
  set_rows(state, kRows * kCols, 12);
}
BENCHMARK(BM_HeedAdd)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_PlainAddFreshOutput(benchmark::State& state) {
  Tensor a = Tensor::randn({kRows, kCols}, 1), b = Tensor::randn({kRows, kCols}, 2);
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  const int64_t n = kRows * kCols;
  for (auto _ : state) {
    Tensor c = Tensor::empty({kRows, kCols});
    float* pc = c.data<float>();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) pc[i] = pa[i] + pb[i];
    benchmark::DoNotOptimize(pc);
  }
  set_rows(state, n, 12);
}
BENCHMARK(BM_PlainAddFreshOutput)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_PlainAddReusedOutput(benchmark::State& state) {
  Tensor a = Tensor::randn({kRows, kCols}, 1), b = Tensor::randn({kRows, kCols}, 2), c = Tensor::zeros({kRows, kCols});
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* pc = c.data<float>();
  const int64_t n = kRows * kCols;
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) pc[i] = pa[i] + pb[i];
    benchmark::ClobberMemory();
  }
  set_rows(state, n, 12);
}
BENCHMARK(BM_PlainAddReusedOutput)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_HeedAddBroadcastRow(benchmark::State& state) {
  Tensor a = Tensor::randn({kRows, kCols}, 1), b = Tensor::randn({kCols}, 2);
  for (auto _ : state) benchmark::DoNotOptimize(heed::add(a, b).raw_data());
  set_rows(state, kRows * kCols, 8);
}
BENCHMARK(BM_HeedAddBroadcastRow)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_HeedGelu(benchmark::State& state) {
  Tensor a = Tensor::randn({kRows, kCols}, 1);
  for (auto _ : state) benchmark::DoNotOptimize(heed::gelu(a).raw_data());
  set_rows(state, kRows * kCols, 8);
}
BENCHMARK(BM_HeedGelu)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

