// Fused, memory-light attention on the CPU (FlashAttention-style online softmax):
// forward, backward, a T = 1 decoding path and exact weights from the saved log-sum-exp.
// Raw pointers and element strides only; this layer never sees Tensor or autograd.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace heed::kernels::cpu {

// Element strides of a 4-d view, outermost first, e.g. q: [B, Hq, T, D]. A stride may be
// anything (a [B, T, H, D] tensor is passed as the view {T*H*D, D, H*D, 1}); 0 broadcasts.
using Strides4 = std::array<int64_t, 4>;

enum class AttentionWeighting : uint8_t {
  kSoftmax,  // weights = softmax over the allowed keys of a row
  kSigmoid,  // weights = sigmoid(score) independently per key; no normalisation, no lse
};

// Arithmetic of the two products Q K^T and P V in the forward pass. Softmax statistics and
// accumulation are always fp32; inputs stay fp32 in memory and are converted per block.
enum class FlashPrecision : uint8_t { kF32, kBF16 };

// Which instructions compute the BF16 block products. kDotProduct: AVX-512 BF16
// vdpbf16ps (16 lanes x 2 products). kAmx: Intel AMX tiles (tdpbf16ps, 16 x 16 x 32 per
// instruction; needs a CPU with AMX-BF16 and a kernel that grants tile state). kAuto: AMX
// when usable, else the dot product.
enum class FlashBf16Engine : uint8_t { kAuto, kDotProduct, kAmx };

// Instruction set of the kernel; kAuto picks the best the CPU supports at run time.
enum class CpuIsa : uint8_t { kAuto, kScalar, kAvx2, kAvx512 };

// How the block products are computed: heed's own SIMD micro-kernels, or one
// single-threaded cblas_sgemm call per block (kept to measure against; forward only).
enum class FlashGemm : uint8_t { kMicroKernel, kBlas };

// Reusable 64-byte aligned scratch memory. A kernel call asks for all it needs at once
// (per-thread block buffers plus O(T) row statistics, never O(T x S)); the block is kept
// and reused by later calls, since first touches of fresh pages are slow. One workspace
// must not serve two calls at the same time.
class FlashWorkspace {
 public:
  FlashWorkspace() = default;
  ~FlashWorkspace();
  FlashWorkspace(const FlashWorkspace&) = delete;
  FlashWorkspace& operator=(const FlashWorkspace&) = delete;

  // At least `bytes` bytes, 64-byte aligned; contents are unspecified.
  void* reserve(size_t bytes);
  // Bytes currently held (the largest request so far).
  size_t bytes() const { return bytes_; }
  // Bytes asked for by the latest kernel call.
  size_t last_request() const { return last_request_; }
  void release();

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  size_t last_request_ = 0;
};

// The workspace owned by the calling thread, used when FlashParams::workspace is null.
FlashWorkspace& default_flash_workspace();

// A key j is allowed for query row i of batch b and head h only if every mask allows it.
struct FlashMasks {
  const int64_t* key_lengths = nullptr;  // [B]; key j allowed iff j < key_lengths[b]
  bool causal = false;                   // key j allowed iff j <= i + causal_offset
  int64_t causal_offset = 0;             // S - T when decoding with a cache
  int64_t window_left = -1;              // >= 0: key j allowed iff j >= i + causal_offset - window_left
  int64_t window_right = -1;             // >= 0: key j allowed iff j <= i + causal_offset + window_right
  const uint8_t* bool_mask = nullptr;    // [B, Hq, T, S] through bool_strides; nonzero = allowed
  Strides4 bool_strides{};
  const float* additive_mask = nullptr;  // [B, Hq, T, S] through additive_strides; added to the
  Strides4 additive_strides{};           // scaled scores (-inf = masked)
};

// Element (b, h, i, j) is kept iff heed::random::dropout_keep(seed, stream,
// ((b*Hq + h)*T + i)*S + j, p); kept weights are scaled by 1/(1-p). The composed path
// applies dropout to a contiguous [B, Hq, T, S] weight tensor with the same linear index.
struct FlashDropout {
  float p = 0.0f;  // in [0, 1)
  uint64_t seed = 0;
  uint64_t stream = 0;
};

struct FlashParams {
  int64_t batch = 1;       // B
  int64_t q_heads = 1;     // Hq
  int64_t kv_heads = 1;    // Hkv; divides Hq; query head h uses kv head h / (Hq / Hkv)
  int64_t q_len = 0;       // T
  int64_t kv_len = 0;      // S
  int64_t head_dim = 0;    // D
  int64_t v_head_dim = 0;  // Dv

  const float* q = nullptr;  // [B, Hq, T, D]
  Strides4 q_strides{};
  const float* k = nullptr;  // [B, Hkv, S, D]
  Strides4 k_strides{};
  const float* v = nullptr;  // [B, Hkv, S, Dv]
  Strides4 v_strides{};
  float* out = nullptr;      // [B, Hq, T, Dv]; written by the forward
  Strides4 out_strides{};
  float* lse = nullptr;      // [B, Hq, T] contiguous, natural log; -inf for a fully masked row.
                             // Written by the softmax forward (may be null there), read by the
                             // softmax backward and by flash_attention_weights.

  float scale = 1.0f;  // scores = scale * q.k (+ additive mask); callers default it to 1/sqrt(D)
  FlashMasks mask;
  AttentionWeighting weighting = AttentionWeighting::kSoftmax;
  FlashDropout dropout;
  FlashPrecision precision = FlashPrecision::kF32;
  FlashBf16Engine bf16_engine = FlashBf16Engine::kAuto;
  CpuIsa isa = CpuIsa::kAuto;
  FlashGemm gemm = FlashGemm::kMicroKernel;
  FlashWorkspace* workspace = nullptr;  // null: default_flash_workspace()
};

// Gradients for flash_attention_backward. Outputs are overwritten, not accumulated into.
struct FlashGrads {
  const float* grad_out = nullptr;  // [B, Hq, T, Dv]
  Strides4 grad_out_strides{};
  float* grad_q = nullptr;          // [B, Hq, T, D]
  Strides4 grad_q_strides{};
  float* grad_k = nullptr;          // [B, Hkv, S, D]; summed over the query heads of a group
  Strides4 grad_k_strides{};
  float* grad_v = nullptr;          // [B, Hkv, S, Dv]
  Strides4 grad_v_strides{};
  // Optional: gradient of the additive mask, laid out with the mask's own strides
  // (FlashMasks::additive_strides); broadcast (stride 0) dimensions are summed over.
  float* grad_additive_mask = nullptr;
};

// One (batch, query head) pair whose weights flash_attention_weights writes.
struct FlashHead {
  int64_t batch = 0;
  int64_t head = 0;
};

struct FlashWeightsRequest {
  std::span<const FlashHead> heads;
  int64_t row_begin = 0;      // query rows [row_begin, row_end)
  int64_t row_end = 0;
  float* weights = nullptr;   // [heads.size(), row_end - row_begin, S] contiguous
};

// out = weights(scale * Q K^T + masks) V, per (b, h); writes lse for softmax weighting.
// T = 1 takes a decoding path that splits the keys of each head across threads.
void flash_attention_forward(const FlashParams& params);

// Gradients of the forward above. Needs params.out and (softmax) params.lse from the
// forward with the same inputs; dropout is replayed from the same seed and stream.
// Deterministic and independent of the number of threads. The backward always computes in
// fp32 (params.precision is ignored); after a bf16 forward, out and lse carry bf16 error.
// grad_k and grad_v are accumulated in place when their rows are unit-stride (no extra
// memory); otherwise an [S, D] buffer per thread is used.
void flash_attention_backward(const FlashParams& params, const FlashGrads& grads);

// The exact attention weights (before dropout) of the requested heads and query rows,
// recomputed from q, k and the saved lse (softmax) without touching other rows.
void flash_attention_weights(const FlashParams& params, const FlashWeightsRequest& request);

// The instruction set a request resolves to on this CPU (kAuto: the best supported).
CpuIsa resolve_cpu_isa(CpuIsa requested);
const char* cpu_isa_name(CpuIsa isa);
// Whether the CPU has the AVX-512 BF16 dot product that FlashPrecision::kBF16 needs.
bool cpu_has_avx512_bf16();
// Whether AMX-BF16 tiles are usable (CPU support, and on Linux the kernel's permission,
// requested once per process).
bool cpu_has_amx_bf16();

}  // namespace heed::kernels::cpu
