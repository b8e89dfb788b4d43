// The typed configuration of a G2P training run (data, model, optimiser, schedule, training
// loop, decoding), read from TOML. A bad file gives one heed::Error line naming the file and
// the key: an unknown key, a value of the wrong type, or a value out of range.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "heed/data/g2p.h"
#include "heed/kernels/cpu/gemm.h"
#include "heed/models/transformer_seq2seq.h"
#include "heed/train/optimizer.h"
#include "heed/train/schedule.h"

namespace heed::train {

struct DataConfig {
  std::string cmudict = "data/cmudict/cmudict.dict";
  data::Pronunciations pronunciations = data::Pronunciations::kAll;  // training targets
  int64_t max_train_words = 0;  // 0: all; else the first N training words (quick runs)
  int64_t max_valid_words = 0;  // 0: all validation words are decoded each epoch
};

enum class OptimizerKind { kAdam, kAdamW, kSgd };

struct OptimConfig {
  OptimizerKind kind = OptimizerKind::kAdam;
  double beta1 = 0.9, beta2 = 0.98, eps = 1e-9;
  double weight_decay = 0.0;
  double momentum = 0.0;  // SGD
  double clip_norm = 1.0;  // 0: no clipping
  double label_smoothing = 0.1;
  ScheduleOptions schedule{.kind = ScheduleKind::kInverseSqrt, .peak_lr = 1e-3, .warmup_steps = 1000,
                           .warmup_init_lr = 1e-7};
};

struct LoopConfig {
  std::string run_dir = "runs/g2p";
  uint64_t seed = 1;
  int64_t batch_size = 64;        // sequences per batch at most
  int64_t max_tokens = 0;         // padded positions per batch at most (0: no budget)
  int64_t max_epochs = 100;
  int64_t max_steps = 0;          // 0: no limit
  double time_limit_minutes = 0;  // 0: no limit; counts resumed time too
  int64_t patience = 5;           // epochs without a better validation WER before stopping (0: never)
  int64_t log_every = 100;        // steps between JSONL step records
  int64_t checkpoint_every = 0;   // steps between mid-epoch checkpoints (0: at epoch ends only)
  int64_t keep_epochs = 0;        // keep the models of the last N epochs as checkpoints/epoch-E (0: none),
                                  // for `heed average`
  int64_t threads = 0;            // OpenMP threads (0: leave as is)
  // When max_steps or the time limit stops the run mid-epoch, validate the final model too
  // (and keep it as best if it is): a time-limited run then ends with its latest weights judged.
  bool validate_at_stop = true;
  // f32 products during the run (training steps and validation): "f32", or "bf16" (operands
  // rounded to bf16, f32 sums, on AMX where the CPU has it; kernels/cpu/gemm.h). Weights,
  // activations, gradients and optimiser state stay f32. Unset: the process's setting
  // (HEED_MATMUL_PRECISION, else f32).
  std::optional<kernels::cpu::MatmulPrecision> matmul_precision;
};

struct DecodeConfig {
  int64_t beam_size = 5;
  double alpha = 1.0;
  int64_t nbest = 1;
  int64_t max_len = 48;
  int64_t batch_size = 256;  // words decoded together
  int64_t valid_beam_size = 1;  // beam used for the per-epoch validation WER (1: greedy)
};

struct G2PConfig {
  DataConfig data;
  models::TransformerSeq2SeqOptions model;  // vocabulary sizes are filled from the data
  OptimConfig optim;
  LoopConfig loop;
  DecodeConfig decode;
};

// Parses TOML text; `source` names it in errors (a path, or "<string>").
G2PConfig parse_g2p_config(std::string_view toml, std::string_view source = "<string>");
G2PConfig load_g2p_config(const std::string& path);

// The model part as JSON (checkpoints) and back; from_json throws heed::Error naming the key.
std::string model_config_to_json(const models::TransformerSeq2SeqOptions& model);
models::TransformerSeq2SeqOptions model_config_from_json(std::string_view json, std::string_view source);

// The whole config as JSON (logged at the start of a run, stored with checkpoints) and
// back, with the same checks as the TOML form.
std::string g2p_config_to_json(const G2PConfig& config);
G2PConfig g2p_config_from_json(std::string_view json, std::string_view source);

// An optimiser for `params` as the config says, with the schedule's step-1 learning rate.
std::unique_ptr<Optimizer> make_optimizer(const OptimConfig& config, NamedTensors params);

}  // namespace heed::train
