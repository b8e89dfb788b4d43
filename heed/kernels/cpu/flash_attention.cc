// Fused attention: argument checks, the reusable workspace and run-time choice of the
// instruction set (AVX-512, AVX2 or scalar; see flash_attention_impl.h for the algorithm).
#include "heed/kernels/cpu/flash_attention.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <new>

#include "heed/kernels/cpu/flash_attention_isa.h"
#include "heed/kernels/cpu/philox.h"
#include "heed/tensor/error.h"
#include "heed/tensor/random.h"

namespace heed::kernels::cpu {

FlashWorkspace::~FlashWorkspace() { release(); }

void* FlashWorkspace::reserve(size_t bytes) {
  last_request_ = bytes;
  if (bytes <= bytes_ && data_ != nullptr) return data_;
  release();
  const size_t rounded = (bytes + 4095) / 4096 * 4096;
  data_ = std::aligned_alloc(4096, rounded == 0 ? 4096 : rounded);
  if (data_ == nullptr) fail("flash_attention: cannot allocate ", bytes, " bytes of workspace");
  bytes_ = rounded;
  return data_;
}

void FlashWorkspace::release() {
  std::free(data_);
  data_ = nullptr;
  bytes_ = 0;
}

FlashWorkspace& default_flash_workspace() {
  thread_local FlashWorkspace workspace;
  return workspace;
}

namespace flash_detail {
void dropout_keep_mask(uint64_t seed, uint64_t stream, uint64_t index0, int64_t n, float p,
                       uint8_t* keep) {
  // heed::random::dropout_keep's rule with the words drawn in bulk.
  const uint32_t threshold = random::dropout_threshold(p);
  constexpr int64_t kWords = 1024;
  alignas(64) uint32_t words[kWords];
  for (int64_t done = 0; done < n;) {
    const uint64_t index = index0 + static_cast<uint64_t>(done);
    const int64_t offset = static_cast<int64_t>(index % 4), m = std::min(n - done, kWords - offset);
    philox_words(seed, stream, index / 4, (offset + m + 3) / 4, words);
    for (int64_t x = 0; x < m; ++x) keep[done + x] = (words[offset + x] >> 8) >= threshold ? 1 : 0;
    done += m;
  }
}
}  // namespace flash_detail

namespace {

bool cpu_has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("fma");
}

bool cpu_has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

void check_strided(const char* op, const char* name, const void* ptr) {
  HEED_CHECK(ptr != nullptr, op, ": ", name, " is null, expected a pointer to the data");
}

void check_params(const char* op, const FlashParams& p) {
  HEED_CHECK(p.batch >= 1 && p.q_heads >= 1 && p.kv_heads >= 1, op, ": batch ", p.batch, ", q_heads ",
             p.q_heads, ", kv_heads ", p.kv_heads, " expected all >= 1");
  HEED_CHECK(p.q_heads % p.kv_heads == 0, op, ": q_heads ", p.q_heads,
             " expected a multiple of kv_heads ", p.kv_heads);
  HEED_CHECK(p.q_len >= 0 && p.kv_len >= 0, op, ": q_len ", p.q_len, ", kv_len ", p.kv_len,
             " expected >= 0");
  HEED_CHECK(p.head_dim >= 1 && p.v_head_dim >= 1, op, ": head_dim ", p.head_dim, ", v_head_dim ",
             p.v_head_dim, " expected >= 1");
  if (p.q_len > 0) check_strided(op, "q", p.q);
  if (p.kv_len > 0) check_strided(op, "k", p.k);
  HEED_CHECK(p.dropout.p >= 0.0f && p.dropout.p < 1.0f, op, ": dropout p ", p.dropout.p,
             " expected in [0, 1)");
  HEED_CHECK(p.mask.window_left >= -1 && p.mask.window_right >= -1, op, ": window_left ",
             p.mask.window_left, ", window_right ", p.mask.window_right, " expected >= -1 (-1 = none)");
  if (p.precision == FlashPrecision::kBF16) {
    HEED_CHECK(cpu_has_avx512_bf16(), op, ": FlashPrecision::kBF16 needs a CPU with AVX-512 BF16");
    HEED_CHECK(resolve_cpu_isa(p.isa) == CpuIsa::kAvx512, op,
               ": FlashPrecision::kBF16 needs the AVX-512 kernels, got isa ", cpu_isa_name(p.isa));
    HEED_CHECK(p.bf16_engine != FlashBf16Engine::kAmx || cpu_has_amx_bf16(), op,
               ": FlashBf16Engine::kAmx requested, but AMX-BF16 tiles are not usable here");
  }
}

FlashWorkspace& workspace_of(const FlashParams& p) {
  return p.workspace != nullptr ? *p.workspace : default_flash_workspace();
}

}  // namespace

bool cpu_has_avx512_bf16() { return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16"); }

bool cpu_has_amx_bf16() {
  static const bool usable = [] {
    if (!cpu_has_avx512_bf16()) return false;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool amx_bf16 = (d >> 22) & 1u, amx_tile = (d >> 24) & 1u;
    if (!amx_bf16 || !amx_tile) return false;
#if defined(__linux__)
    // Linux hands out AMX tile state only on request (ARCH_REQ_XCOMP_PERM, XTILEDATA).
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
    return false;
#endif
  }();
  return usable;
}

CpuIsa resolve_cpu_isa(CpuIsa requested) {
  switch (requested) {
    case CpuIsa::kAuto:
      if (cpu_has_avx512()) return CpuIsa::kAvx512;
      if (cpu_has_avx2()) return CpuIsa::kAvx2;
      return CpuIsa::kScalar;
    case CpuIsa::kAvx512:
      HEED_CHECK(cpu_has_avx512(), "flash_attention: isa avx512 requested, but this CPU lacks AVX-512");
      return requested;
    case CpuIsa::kAvx2:
      HEED_CHECK(cpu_has_avx2(), "flash_attention: isa avx2 requested, but this CPU lacks AVX2/FMA");
      return requested;
    case CpuIsa::kScalar:
      return requested;
  }
  fail("flash_attention: unknown isa ", static_cast<int>(requested));
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAuto: return "auto";
    case CpuIsa::kScalar: return "scalar";
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kAvx512: return "avx512";
  }
  return "?";
}

void flash_attention_forward(const FlashParams& p) {
  constexpr const char* op = "flash_attention_forward";
  check_params(op, p);
  if (p.kv_len > 0) check_strided(op, "v", p.v);
  if (p.q_len > 0) check_strided(op, "out", p.out);
  if (p.q_len == 0) return;
  FlashWorkspace& ws = workspace_of(p);
  FlashParams resolved = p;
  if (p.bf16_engine == FlashBf16Engine::kAuto)
    resolved.bf16_engine = cpu_has_amx_bf16() ? FlashBf16Engine::kAmx : FlashBf16Engine::kDotProduct;
  switch (resolve_cpu_isa(p.isa)) {
    case CpuIsa::kAvx512: flash_avx512::forward(resolved, ws); break;
    case CpuIsa::kAvx2: flash_avx2::forward(p, ws); break;
    default: flash_scalar::forward(p, ws); break;
  }
}

void flash_attention_backward(const FlashParams& p, const FlashGrads& g) {
  constexpr const char* op = "flash_attention_backward";
  check_params(op, p);
  if (p.kv_len > 0) {
    check_strided(op, "v", p.v);
    check_strided(op, "grad_k", g.grad_k);
    check_strided(op, "grad_v", g.grad_v);
  }
  if (p.q_len > 0) {
    check_strided(op, "out", p.out);
    check_strided(op, "grad_out", g.grad_out);
    check_strided(op, "grad_q", g.grad_q);
    if (p.weighting == AttentionWeighting::kSoftmax) check_strided(op, "lse", p.lse);
  }
  HEED_CHECK(g.grad_additive_mask == nullptr || p.mask.additive_mask != nullptr, op,
             ": grad_additive_mask given but the params have no additive mask");
  FlashParams fp32 = p;  // the backward products are fp32 whatever the forward used
  fp32.precision = FlashPrecision::kF32;
  FlashWorkspace& ws = workspace_of(p);
  switch (resolve_cpu_isa(p.isa)) {
    case CpuIsa::kAvx512: flash_avx512::backward(fp32, g, ws); break;
    case CpuIsa::kAvx2: flash_avx2::backward(fp32, g, ws); break;
    default: flash_scalar::backward(fp32, g, ws); break;
  }
}

void flash_attention_weights(const FlashParams& p, const FlashWeightsRequest& r) {
  constexpr const char* op = "flash_attention_weights";
  check_params(op, p);
  if (p.weighting == AttentionWeighting::kSoftmax) check_strided(op, "lse", p.lse);
  check_strided(op, "weights", r.weights);
  HEED_CHECK(0 <= r.row_begin && r.row_begin <= r.row_end && r.row_end <= p.q_len, op, ": rows [",
             r.row_begin, ", ", r.row_end, ") expected within [0, ", p.q_len, ")");
  for (const FlashHead& h : r.heads)
    HEED_CHECK(0 <= h.batch && h.batch < p.batch && 0 <= h.head && h.head < p.q_heads, op,
               ": head (", h.batch, ", ", h.head, ") expected within batch ", p.batch, " and heads ",
               p.q_heads);
  FlashParams fp32 = p;
  fp32.precision = FlashPrecision::kF32;
  FlashWorkspace& ws = workspace_of(p);
  switch (resolve_cpu_isa(p.isa)) {
    case CpuIsa::kAvx512: flash_avx512::weights(fp32, r, ws); break;
    case CpuIsa::kAvx2: flash_avx2::weights(fp32, r, ws); break;
    default: flash_scalar::weights(fp32, r, ws); break;
  }
}

}  // namespace heed::kernels::cpu
