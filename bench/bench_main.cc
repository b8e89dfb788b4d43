// The one main() of heed_bench (every bench/*.cc registers Google Benchmark entries).
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
