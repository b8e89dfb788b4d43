// The one main() of heed_bench (every bench/*.cc registers Google Benchmark entries).
#include <benchmark/benchmark.h>
#include <malloc.h>

int main(int argc, char** argv) {
#ifdef __GLIBC__
  // The same allocator settings as the heed command line (heed/cli/main.cc): freed buffers
  // stay in the heap, so steady-state steps do not page-fault on fresh mmap'd memory.
  mallopt(M_MMAP_THRESHOLD, 512 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
