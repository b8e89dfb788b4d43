// Measured arithmetic peak of this machine (FP32 FMA and BF16 dot product), shared by the
// benchmarks that report a fraction of peak. Implemented in bench/fma_probe.cc.
#pragma once

namespace heed::bench {

// Best-of-several FP32 FMA throughput in GFLOP/s (an FMA counts 2 flops) with `threads`
// OpenMP threads, using the widest vectors the CPU has (AVX-512, else AVX2). Each thread's
// rate is taken over its own CPU time (robust to other processes on the cores); cached.
double fma_peak_gflops(int threads);
// Same for the AVX-512 BF16 dot product vdpbf16ps (2 multiply-adds per fp32 lane); 0 if
// the CPU lacks it.
double bf16_peak_gflops(int threads);

}  // namespace heed::bench
