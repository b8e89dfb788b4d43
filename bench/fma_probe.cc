// FMA peak probe: independent chains of fused multiply-adds (enough to hide the latency of
// both FMA ports), each thread timed on its own CPU clock. Google Benchmark entries report
// GFLOP/s; attention_bench.cc uses it for its fraction-of-peak counters.
#include "bench/fma_probe.h"

#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>

namespace heed::bench {
namespace {

constexpr long kIters = 20'000'000;

// 16 independent accumulators: latency 4 x 2 ports needs at least 8.
#define HEED_PROBE_BODY(REG, SET1, FMA, FLOPS_PER_OP)                                       \
  REG a0 = SET1(0.1f), a1 = SET1(0.2f), a2 = SET1(0.3f), a3 = SET1(0.4f), a4 = SET1(0.5f),    \
      a5 = SET1(0.6f), a6 = SET1(0.7f), a7 = SET1(0.8f), a8 = SET1(0.9f), a9 = SET1(1.0f),    \
      a10 = SET1(1.1f), a11 = SET1(1.2f), a12 = SET1(1.3f), a13 = SET1(1.4f),               \
      a14 = SET1(1.5f), a15 = SET1(1.6f);                                                   \
  const REG m = SET1(0.999f), c = SET1(1e-4f);                                              \
  for (long i = 0; i < kIters; ++i) {                                                       \
    a0 = FMA(a0, m, c); a1 = FMA(a1, m, c); a2 = FMA(a2, m, c); a3 = FMA(a3, m, c);         \
    a4 = FMA(a4, m, c); a5 = FMA(a5, m, c); a6 = FMA(a6, m, c); a7 = FMA(a7, m, c);         \
    a8 = FMA(a8, m, c); a9 = FMA(a9, m, c); a10 = FMA(a10, m, c); a11 = FMA(a11, m, c);     \
    a12 = FMA(a12, m, c); a13 = FMA(a13, m, c); a14 = FMA(a14, m, c); a15 = FMA(a15, m, c); \
  }                                                                                         \
  REG s = FMA(a0, a1, a2);                                                                  \
  s = FMA(s, a3, a4); s = FMA(s, a5, a6); s = FMA(s, a7, a8); s = FMA(s, a9, a10);           \
  s = FMA(s, a11, a12); s = FMA(s, a13, a14); s = FMA(s, a15, m);                           \
  benchmark::DoNotOptimize(s);                                                              \
  return 16.0 * kIters * (FLOPS_PER_OP);

__attribute__((target("avx512f,fma"))) double chains_avx512() {
  HEED_PROBE_BODY(__m512, _mm512_set1_ps, _mm512_fmadd_ps, 32)
}

__attribute__((target("avx2,fma"))) double chains_avx2() {
  HEED_PROBE_BODY(__m256, _mm256_set1_ps, _mm256_fmadd_ps, 16)
}

__attribute__((target("avx512f,avx512bf16"))) __m512 dpbf16(__m512 acc, __m512 a, __m512 b) {
  return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

__attribute__((target("avx512f,avx512bf16"))) double chains_bf16() {
  // Each vdpbf16ps does 32 multiply-adds (16 lanes x 2 pairs) = 64 flops.
  HEED_PROBE_BODY(__m512, _mm512_set1_ps, dpbf16, 64)
}

#undef HEED_PROBE_BODY

bool has_avx512() { return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"); }
bool has_bf16() { return has_avx512() && __builtin_cpu_supports("avx512bf16"); }

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// GFLOP/s of `chains` run by every thread at once, best of `reps`: the sum over threads of
// each thread's flops per second of its own CPU time, so that other processes sharing the
// cores do not lower the figure (the wall-clock rate is returned in *wall if given).
double measure(double (*chains)(), int threads, int reps, double* wall = nullptr) {
  double best = 0.0, best_wall = 0.0;
  for (int r = 0; r < reps; ++r) {
    double rate = 0.0, flops = 0.0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : rate, flops)
    {
      const double c0 = thread_cpu_seconds();
      const double f = chains();
      rate += f / (thread_cpu_seconds() - c0);
      flops += f;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, rate * 1e-9);
    best_wall = std::max(best_wall, flops / s * 1e-9);
  }
  if (wall != nullptr) *wall = best_wall;
  return best;
}

double cached(std::map<int, double>& cache, double (*chains)(), int threads) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(threads);
  if (it != cache.end()) return it->second;
  return cache[threads] = measure(chains, threads, 5);
}

}  // namespace

double fma_peak_gflops(int threads) {
  static std::map<int, double> cache;
  return cached(cache, has_avx512() ? chains_avx512 : chains_avx2, threads);
}

double bf16_peak_gflops(int threads) {
  static std::map<int, double> cache;
  return has_bf16() ? cached(cache, chains_bf16, threads) : 0.0;
}

namespace {

void BM_FmaPeak(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const bool bf16 = state.range(1) != 0;
  if (bf16 && !has_bf16()) {
    state.SkipWithError("no AVX-512 BF16 on this CPU");
    return;
  }
  double (*chains)() = bf16 ? chains_bf16 : has_avx512() ? chains_avx512 : chains_avx2;
  double gflops = 0.0, wall = 0.0;
  for (auto _ : state) gflops = measure(chains, threads, 1, &wall);
  state.counters["GFLOP/s"] = wall;
  state.counters["cpu_GFLOP/s"] = gflops;
  state.SetLabel(bf16 ? "vdpbf16ps" : has_avx512() ? "avx512 fma" : "avx2 fma");
}
BENCHMARK(BM_FmaPeak)->ArgNames({"threads", "bf16"})->ArgsProduct({{1, 2}, {0, 1}})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace heed::bench
