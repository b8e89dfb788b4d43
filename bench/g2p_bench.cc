// The G2P Transformer's speed, shaped like bench/peers/g2p_torch.py: d = 256, 4 heads, 3+3
// post-norm layers, ff 1024, vocab 64, dropout 0.1 (on residual branches and embeddings, as
// heed's G2P configs; /all_dropouts:1 also on attention weights and the feed-forward hidden
// layer, as nn.Transformer's default). One Adam training step at B = 64,
// S = T = 24 (target tokens/s), and greedy decoding of exactly 24 tokens with the key/value
// cache at B = 1 and B = 64 (tokens/s). /bf16:1 trains with the products in bf16 on AMX
// (kernels/cpu/gemm.h, train.matmul_precision = "bf16"); its peer is g2p_torch.py --bf16 1,
// PyTorch's CPU autocast to bf16.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <vector>

#include "heed/decode/kv_cache.h"
#include "heed/kernels/cpu/gemm.h"
#include "heed/heed.h"
#include "heed/models/transformer_seq2seq.h"
#include "heed/ops/loss.h"
#include "heed/train/optimizer.h"

namespace {

using heed::Tensor;
constexpr int64_t kVocab = 64, kLen = 24;

// all_dropouts: also drop attention weights and the feed-forward hidden layer, as
// nn.Transformer(dropout=0.1) does; otherwise only residual branches and embeddings, as
// heed's G2P configs train (attention_dropout = activation_dropout = 0).
heed::models::TransformerSeq2SeqOptions g2p_options(bool all_dropouts = false) {
  const double inner = all_dropouts ? 0.1 : 0.0;
  return {.src_vocab = kVocab, .tgt_vocab = kVocab, .d_model = 256, .heads = 4, .encoder_layers = 3,
          .decoder_layers = 3, .ff_width = 1024, .dropout = 0.1, .attention_dropout = inner,
          .activation_dropout = inner, .norm_first = false, .tie = heed::models::TieEmbeddings::kNone, .seed = 1};
}

// Deterministic token ids in [3, 63): no padding, no special tokens.
Tensor tokens(int64_t b, int64_t t, int64_t mult) {
  Tensor x = Tensor::empty({b, t}, heed::DType::kI64);  // [B, T]
  for (int64_t i = 0; i < b * t; ++i) x.data<int64_t>()[i] = 3 + (i * mult) % (kVocab - 4);
  return x;
}

void shape_counters(benchmark::State& state, int64_t b, int64_t t) {
  state.counters["B"] = b;
  state.counters["S"] = kLen;
  state.counters["T"] = t;
  state.counters["omp_threads"] = omp_get_max_threads();
}

void BM_G2pTrainStep(benchmark::State& state) {
  const int64_t b = 64;
  const bool all_dropouts = state.range(0) != 0, bf16 = state.range(1) != 0;
  if (bf16 && !heed::kernels::cpu::bf16_matmul_available()) {
    state.SkipWithError("no AMX-BF16 on this CPU");
    return;
  }
  const heed::kernels::cpu::MatmulPrecision saved = heed::kernels::cpu::matmul_precision();
  heed::kernels::cpu::set_matmul_precision(bf16 ? heed::kernels::cpu::MatmulPrecision::kBf16
                                                 : heed::kernels::cpu::MatmulPrecision::kF32);
  heed::models::TransformerSeq2Seq model(g2p_options(all_dropouts));
  model.train();
  Tensor src = tokens(b, kLen, 1), tgt_in = tokens(b, kLen, 7), tgt_out = tokens(b, kLen, 11);
  Tensor lengths = Tensor::full({b}, kLen, heed::DType::kI64);
  heed::train::Adam adam(model.named_parameters(), {.lr = 1e-4});
  uint64_t step = 0;
  for (auto _ : state) {
    adam.zero_grad();
    Tensor logits = model.forward(src, lengths, tgt_in, ++step);  // [B, T, V]
    Tensor loss = heed::cross_entropy(logits, tgt_out, {.label_smoothing = 0.1});
    loss.backward();
    adam.step();
  }
  shape_counters(state, b, kLen);
  state.counters["attn_drop_pct"] = all_dropouts ? 10 : 0;  // g2p_torch.py --attn-dropout-pct
  state.counters["ff_drop_pct"] = all_dropouts ? 10 : 0;    // g2p_torch.py --ff-dropout-pct
  state.counters["bf16"] = bf16 ? 1 : 0;                     // g2p_torch.py --bf16
  heed::kernels::cpu::set_matmul_precision(saved);
  state.counters["target_tokens/s"] =
      benchmark::Counter(static_cast<double>(b * kLen), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_G2pGreedyDecode(benchmark::State& state) {
  const int64_t b = state.range(0);
  heed::models::TransformerSeq2Seq model(g2p_options());
  model.eval();
  Tensor src = tokens(b, kLen, 1), lengths = Tensor::full({b}, kLen, heed::DType::kI64);
  heed::autograd::NoGradGuard no_grad;
  for (auto _ : state) {
    heed::decode::CachedSeq2SeqDecoder decoder(model);
    decoder.start(src, lengths, kLen);
    Tensor next = Tensor::full({b}, 1, heed::DType::kI64);  // BOS
    for (int64_t t = 0; t < kLen; ++t) {  // exactly 24 steps, no early stop (as the peer)
      Tensor logp = decoder.step(next);  // [B, V]
      const float* p = logp.raw_contiguous().data<float>();
      for (int64_t i = 0; i < b; ++i) {
        int64_t best = 0;
        for (int64_t v = 1; v < kVocab; ++v)
          if (p[i * kVocab + v] > p[i * kVocab + best]) best = v;
        next.data<int64_t>()[i] = best;
      }
    }
    benchmark::DoNotOptimize(next.raw_data());
  }
  shape_counters(state, b, kLen);
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(b * kLen), benchmark::Counter::kIsIterationInvariantRate);
}

// The floor under batch-1 decoding: every decoding step must read each decoder weight
// matrix once (3 layers x {in_proj 768x256, out_proj, cross q and out 256x256, linear1
// 1024x256, linear2 256x1024}: 11 MB of f32, more than the L2 caches hold). This streams
// exactly those matrices through single-row GEMMs (heed's GEMM kernel, as a decoding step
// does) 24 times, nothing else: a decode at B = 1 cannot be faster than this on the machine.
void BM_G2pDecoderWeightStream(benchmark::State& state) {
  heed::models::TransformerSeq2Seq model(g2p_options());
  std::vector<std::pair<Tensor, int64_t>> weights;  // matrix, rows read per step
  for (const auto& [name, t] : model.named_parameters()) {
    if (name.rfind("decoder.layers.", 0) != 0 || t.dim() != 2) continue;
    // Cross-attention keys/values are projected once per source: a step reads only the Q rows.
    const bool cross_in = name.find("multihead_attn.in_proj_weight") != std::string::npos;
    weights.emplace_back(t, cross_in ? t.size(1) : t.size(0));
  }
  int64_t bytes = 0;
  for (const auto& [w, rows] : weights) bytes += rows * w.size(1) * 4;
  Tensor x = Tensor::full({1, 1024}, 0.5), y = Tensor::empty({1, 1024});
  for (auto _ : state) {
    for (int64_t t = 0; t < kLen; ++t)
      for (const auto& [w, rows] : weights) {  // y[1, rows] = x[1, in] w[:rows, in]^T
        heed::kernels::cpu::GemmParams p{.trans_a = false, .trans_b = true, .m = 1, .n = rows, .k = w.size(1),
                                         .lda = w.size(1), .ldb = w.size(1), .ldc = rows};
        heed::kernels::cpu::gemm(p, x.data<float>(), w.data<float>(), y.data<float>());
      }
    benchmark::DoNotOptimize(y.raw_data());
  }
  state.counters["matrices"] = static_cast<double>(weights.size());
  state.counters["MB_per_step"] = static_cast<double>(bytes) / 1e6;
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes * kLen),
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.counters["omp_threads"] = omp_get_max_threads();
}

// What one core reads from memory at best, for comparison with the weight stream above: a
// plain sum over a buffer of MB megabytes (2: fits a core's L2 here; 11: a decoding step's
// weights; 64), sixteen independent lanes so the compiler vectorises it, nothing else.
void BM_MemoryRead(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0)) * 1024 * 1024 / sizeof(float);
  std::vector<float> a(n, 1.0f);
  constexpr size_t kLanes = 16;
  for (auto _ : state) {
    float acc[kLanes] = {};
    for (size_t i = 0; i + kLanes <= n; i += kLanes)
      for (size_t j = 0; j < kLanes; ++j) acc[j] += a[i + j];
    benchmark::DoNotOptimize(acc);
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(n * sizeof(float)),
                                              benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_G2pTrainStep)->ArgNames({"all_dropouts", "bf16"})->Args({0, 0})->Args({1, 0})->Args({0, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_G2pDecoderWeightStream)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MemoryRead)->ArgNames({"MB"})->Arg(2)->Arg(11)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_G2pGreedyDecode)->ArgNames({"B"})->Arg(1)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
