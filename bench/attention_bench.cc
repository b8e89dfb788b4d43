// Benchmarks of the fused CPU attention kernels (heed/kernels/cpu/flash_attention.h):
// forward and forward+backward, full and causal, fp32 and bf16, 1 and 2 threads.
// Counters: GFLOP/s, fraction of the FP32 FMA peak measured by bench/fma_probe.cc in the
// same binary, and the scratch memory the kernel asked for (its whole extra memory).
//
// Flop convention: forward = 4 * B * H * T * S * D (Q K^T and P V, 2 flops per
// multiply-add), halved when causal; backward = 2.5 x forward (the usual convention:
// five block products against the forward's two); forward+backward = 3.5 x forward.
#include <benchmark/benchmark.h>
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "bench/fma_probe.h"
#include "heed/kernels/cpu/flash_attention.h"
#include "heed/kernels/cpu/flash_attention_isa.h"
#include "heed/tensor/random.h"

namespace heed::bench {
namespace {

using kernels::cpu::FlashGrads;
using kernels::cpu::FlashParams;
using kernels::cpu::FlashPrecision;
using kernels::cpu::FlashWorkspace;

// 64-byte aligned floats, as a heed tensor's storage is.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(int64_t n) : n_(n), data_(static_cast<float*>(std::aligned_alloc(64, (n * 4 + 63) / 64 * 64))) {
    std::memset(data_, 0, n * 4);
  }
  Buffer(Buffer&& o) noexcept : n_(o.n_), data_(o.data_) { o.data_ = nullptr; }
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(n_, o.n_);
    std::swap(data_, o.data_);
    return *this;
  }
  ~Buffer() { std::free(data_); }
  float* data() { return data_; }
  int64_t size() const { return n_; }

 private:
  int64_t n_ = 0;
  float* data_ = nullptr;
};

Buffer random_buffer(int64_t n, uint64_t stream) {
  Buffer x(n);
  for (int64_t i = 0; i < n; ++i) x.data()[i] = heed::random::uniform(7, stream, i) * 2.0f - 1.0f;
  return x;
}

// Contiguous [B, H, L, D] operands, self-attention (T = S = L).
struct Problem {
  Buffer q, k, v, o, lse, dout, dq, dk, dv;
  FlashParams p;
  FlashGrads g;
  FlashWorkspace ws;

  Problem(int64_t B, int64_t H, int64_t L, int64_t D) {
    const int64_t n = B * H * L * D;
    q = random_buffer(n, 1);
    k = random_buffer(n, 2);
    v = random_buffer(n, 3);
    o = Buffer(n);
    lse = Buffer(B * H * L);
    const kernels::cpu::Strides4 s = {H * L * D, L * D, D, 1};
    p.batch = B;
    p.q_heads = p.kv_heads = H;
    p.q_len = p.kv_len = L;
    p.head_dim = p.v_head_dim = D;
    p.scale = 1.0f / std::sqrt(static_cast<float>(D));
    p.q = q.data();
    p.k = k.data();
    p.v = v.data();
    p.out = o.data();
    p.q_strides = p.k_strides = p.v_strides = p.out_strides = s;
    p.lse = lse.data();
    p.workspace = &ws;
  }

  void make_grads() {
    const int64_t n = q.size();
    dout = random_buffer(n, 4);
    dq = Buffer(n);
    dk = Buffer(n);
    dv = Buffer(n);
    g.grad_out = dout.data();
    g.grad_q = dq.data();
    g.grad_k = dk.data();
    g.grad_v = dv.data();
    g.grad_out_strides = g.grad_q_strides = g.grad_k_strides = g.grad_v_strides = p.q_strides;
  }
};

double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Args: B, H, L, D, causal, backward, bf16 (0: fp32, 1: bf16 on vdpbf16ps, 2: bf16 on AMX
// tiles), threads, blas.
// GFLOP/s is per wall-clock second; cpu_GFLOP/s per second of CPU time each thread got
// (flops / (process CPU time / threads)): the rate on cores not shared with anything else.
// peak_frac compares cpu_GFLOP/s with the probe's FP32 FMA peak for as many threads.
void BM_FlashAttention(benchmark::State& state) {
  const int64_t B = state.range(0), H = state.range(1), L = state.range(2), D = state.range(3);
  const bool causal = state.range(4) != 0, backward = state.range(5) != 0, bf16 = state.range(6) != 0;
  const bool amx = state.range(6) == 2;
  const int threads = static_cast<int>(state.range(7));
  const bool blas = state.range(8) != 0;
  if (bf16 && !kernels::cpu::cpu_has_avx512_bf16()) {
    state.SkipWithError("no AVX-512 BF16 on this CPU");
    return;
  }
  if (amx && !kernels::cpu::cpu_has_amx_bf16()) {
    state.SkipWithError("no usable AMX-BF16 here");
    return;
  }
  const double peak = fma_peak_gflops(threads);
  const double bf16_peak = bf16 ? bf16_peak_gflops(threads) : 0.0;
  const int saved_threads = omp_get_max_threads();  // restored at the end: later benchmarks read it
  omp_set_num_threads(threads);
  Problem pr(B, H, L, D);
  pr.p.mask.causal = causal;
  pr.p.precision = bf16 ? FlashPrecision::kBF16 : FlashPrecision::kF32;
  pr.p.bf16_engine = amx ? kernels::cpu::FlashBf16Engine::kAmx : kernels::cpu::FlashBf16Engine::kDotProduct;
  pr.p.gemm = blas ? kernels::cpu::FlashGemm::kBlas : kernels::cpu::FlashGemm::kMicroKernel;
  if (backward) pr.make_grads();
  size_t scratch = 0;
  // One untimed call: the workspace's pages are touched once, as in a training loop.
  kernels::cpu::flash_attention_forward(pr.p);
  scratch = pr.ws.last_request();
  if (backward) {
    kernels::cpu::flash_attention_backward(pr.p, pr.g);
    scratch = std::max(scratch, pr.ws.last_request());
  }
  double seconds = 0.0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    kernels::cpu::flash_attention_forward(pr.p);
    if (backward) kernels::cpu::flash_attention_backward(pr.p, pr.g);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(dt);
    seconds += dt;
  }
  const double fwd_flops = 4.0 * B * H * L * L * D * (causal ? 0.5 : 1.0);
  const double flops = fwd_flops * (backward ? 3.5 : 1.0) * static_cast<double>(state.iterations());
  const double cpu_seconds = (process_cpu_seconds() - cpu0) / threads;
  const double gflops = flops / seconds * 1e-9, cpu_gflops = flops / cpu_seconds * 1e-9;
  state.counters["GFLOP/s"] = gflops;
  state.counters["cpu_GFLOP/s"] = cpu_gflops;
  state.counters["peak_frac"] = cpu_gflops / peak;
  if (bf16) state.counters["bf16_peak_frac"] = cpu_gflops / bf16_peak;
  state.counters["scratch_MiB"] = static_cast<double>(scratch) / (1 << 20);
  // Shape counters read by bench/peers/compare.py to find the PyTorch peer case.
  state.counters["B"] = static_cast<double>(B);
  state.counters["H"] = static_cast<double>(H);
  state.counters["L"] = static_cast<double>(L);
  state.counters["D"] = static_cast<double>(D);
  state.counters["causal"] = causal;
  state.counters["pass"] = backward;
  state.counters["bf16"] = bf16;
  state.counters["omp_threads"] = threads;
  omp_set_num_threads(saved_threads);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"B", "H", "L", "D", "causal", "bwd", "bf16", "threads", "blas"});
  for (int64_t D : {64, 128})
    for (int64_t L : {128, 512, 2048, 4096})
      for (int64_t causal : {0, 1})
        for (int64_t bwd : {0, 1})
          for (int64_t threads : {1, 2}) {
            b->Args({8, 8, L, D, causal, bwd, 0, threads, 0});
            if (!bwd) b->Args({8, 8, L, D, causal, 0, 1, threads, 0});
            if (!bwd) b->Args({8, 8, L, D, causal, 0, 2, threads, 0});
            if (!bwd && causal == 0 && threads == 1 && L <= 2048) b->Args({8, 8, L, D, 0, 0, 0, 1, 1});
          }
  for (int64_t D : {64, 128})
    for (int64_t causal : {0, 1})
      for (int64_t bwd : {0, 1})
        for (int64_t threads : {1, 2}) b->Args({1, 8, 16384, D, causal, bwd, 0, threads, 0});
  // One (batch, head): the backward's two-pass form on two threads.
  for (int64_t causal : {0, 1})
    for (int64_t threads : {1, 2}) b->Args({1, 1, 4096, 64, causal, 1, 0, threads, 0});
}
BENCHMARK(BM_FlashAttention)->Apply(shapes)->UseManualTime()->Unit(benchmark::kMillisecond);

// The same forward on each instruction-set path (0: scalar, 1: AVX2, 2: AVX-512), one
// thread, B = 1, H = 8: what a CPU without AVX-512 gets from the same binary.
void BM_FlashAttentionIsa(benchmark::State& state) {
  const int64_t L = state.range(0), D = state.range(1);
  const kernels::cpu::CpuIsa isa = state.range(2) == 0   ? kernels::cpu::CpuIsa::kScalar
                                   : state.range(2) == 1 ? kernels::cpu::CpuIsa::kAvx2
                                                         : kernels::cpu::CpuIsa::kAvx512;
  if (kernels::cpu::resolve_cpu_isa(kernels::cpu::CpuIsa::kAuto) != kernels::cpu::CpuIsa::kAvx512 &&
      isa == kernels::cpu::CpuIsa::kAvx512) {
    state.SkipWithError("no AVX-512 on this CPU");
    return;
  }
  const int saved_threads = omp_get_max_threads();  // restored at the end: later benchmarks read it
  omp_set_num_threads(1);
  Problem pr(1, 8, L, D);
  pr.p.isa = isa;
  kernels::cpu::flash_attention_forward(pr.p);
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) kernels::cpu::flash_attention_forward(pr.p);
  const double flops = 4.0 * 8 * L * L * D * static_cast<double>(state.iterations());
  const double cpu_gflops = flops / (process_cpu_seconds() - cpu0) * 1e-9;
  state.counters["cpu_GFLOP/s"] = cpu_gflops;
  state.counters["peak_frac"] = cpu_gflops / fma_peak_gflops(1);
  state.SetLabel(kernels::cpu::cpu_isa_name(isa));
  omp_set_num_threads(saved_threads);
}
BENCHMARK(BM_FlashAttentionIsa)->ArgNames({"L", "D", "isa"})
    ->ArgsProduct({{512, 2048}, {64}, {0, 1, 2}})->UseRealTime()->Unit(benchmark::kMillisecond);

// Where the forward's distance from the FMA peak goes: one 64 x 64 block of its work,
// repeated on the AVX-512 path, one thread (flash_avx512::block_probe). Stage 0: the two
// block products on cache-resident operands; 1: plus the online softmax; 2: plus reading a
// new block of keys and values each time (2,048 keys in turn); 3: S^T = K Q^T alone; 4:
// O += P V alone (a reduction over the block's 64 keys, whatever D); 5: O += P V over 256
// keys at once (what keeping O in registers across four key blocks would give); 6 and 7: 1
// and 2 with scores and softmax in one pass, as the kernel runs full blocks. Compare with
// BM_FlashAttention/B:8/H:8/L:2048 at one thread, which adds the per-row-block work.
void BM_FlashBlock(benchmark::State& state) {
  const int64_t D = state.range(0);
  const int stage = static_cast<int>(state.range(1));
  if (kernels::cpu::resolve_cpu_isa(kernels::cpu::CpuIsa::kAuto) != kernels::cpu::CpuIsa::kAvx512) {
    state.SkipWithError("no AVX-512 on this CPU");
    return;
  }
  constexpr int64_t kReps = 512;
  double flops = 0.0, total = 0.0, seconds = 0.0;
  kernels::cpu::flash_avx512::block_probe(D, kReps, stage, &flops);
  for (auto _ : state) {
    const double t = kernels::cpu::flash_avx512::block_probe(D, kReps, stage, &flops);
    state.SetIterationTime(t);
    seconds += t;
    total += flops;
  }
  const double gflops = total / seconds * 1e-9;
  state.counters["GFLOP/s"] = gflops;
  state.counters["peak_frac"] = gflops / fma_peak_gflops(1);
}
BENCHMARK(BM_FlashBlock)->ArgNames({"D", "stage"})->ArgsProduct({{64, 128}, {0, 1, 2, 3, 4, 5, 6, 7}})
    ->UseManualTime()->Unit(benchmark::kMicrosecond);

// Decoding: one query row against a cache of S keys (T = 1), B = 8, H = 8.
void BM_FlashDecode(benchmark::State& state) {
  const int64_t S = state.range(0), D = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  const int saved_threads = omp_get_max_threads();  // restored at the end: later benchmarks read it
  omp_set_num_threads(threads);
  const int64_t B = 8, H = 8;
  Problem pr(B, H, S, D);
  pr.p.q_len = 1;
  kernels::cpu::flash_attention_forward(pr.p);
  for (auto _ : state) kernels::cpu::flash_attention_forward(pr.p);
  // K and V are each read once: the kernel is memory-bound, so report bytes/s too.
  state.SetBytesProcessed(state.iterations() * 2 * B * H * S * D * 4);
  state.counters["scratch_MiB"] = static_cast<double>(pr.ws.last_request()) / (1 << 20);
  omp_set_num_threads(saved_threads);
}
BENCHMARK(BM_FlashDecode)->ArgNames({"S", "D", "threads"})
    ->ArgsProduct({{512, 4096}, {64, 128}, {1, 2}})->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace heed::bench
