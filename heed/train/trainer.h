// The training loop for TransformerSeq2Seq: seeded length-bucketed batches, label-smoothed
// cross entropy, clipping, a learning-rate schedule, per-epoch validation with early
// stopping, JSONL logs, a progress bar, and checkpoints that resume exactly (the same seed
// gives the same losses whether or not the run was interrupted and resumed).
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "heed/data/batching.h"
#include "heed/io/jsonl.h"
#include "heed/models/transformer_seq2seq.h"
#include "heed/train/checkpoint.h"
#include "heed/train/config.h"
#include "heed/train/optimizer.h"
#include "heed/train/schedule.h"

namespace heed::train {

// What a validation pass reports: `metric` (lower is better; decides early stopping and the
// best checkpoint) and other values for the log.
struct Validation {
  double metric = 0;
  std::vector<std::pair<std::string, double>> values;
};

struct TrainerOptions {
  OptimConfig optim;
  LoopConfig loop;
  // Stored as config.json in every checkpoint directory (model config, vocabularies, ...).
  std::string checkpoint_config_json = "{}";
  std::function<Validation(const models::TransformerSeq2Seq&)> validate;  // empty: no validation
  std::FILE* progress = nullptr;     // progress bar output (nullptr: none)
  io::JsonlWriter* log = nullptr;    // per-step and per-epoch records (nullptr: none)
};

// Where the loop stands; saved as trainer.json with each checkpoint.
struct TrainerState {
  int64_t step = 0;            // optimiser updates done
  int64_t epoch = 0;           // the epoch in progress (0-based)
  int64_t batch_in_epoch = 0;  // batches of that epoch already trained on
  double epoch_loss_sum = 0;   // sum over the epoch's batches of loss * target tokens
  double epoch_tokens = 0;
  double best_metric = std::numeric_limits<double>::infinity();
  int64_t best_epoch = -1;
  int64_t bad_epochs = 0;      // epochs since the best validation metric
  double elapsed_s = 0;        // wall time of the run so far, resumed parts included
  std::string stop_reason;     // set when the loop ended
};

std::string trainer_state_to_json(const TrainerState& state);
TrainerState trainer_state_from_json(std::string_view json, std::string_view source);

struct TrainResult {
  TrainerState state;
  std::vector<std::pair<int64_t, double>> losses;  // (step number, loss) of every step this run
};

class Seq2SeqTrainer {
 public:
  Seq2SeqTrainer(models::TransformerSeq2Seq& model, std::span<const data::Example> train, TrainerOptions options);

  // Trains until max_epochs, max_steps, the time limit or early stopping; writes
  // <run_dir>/checkpoints/last after every epoch, every checkpoint_every steps and at the
  // end, <run_dir>/checkpoints/best when validation improves, and with keep_epochs = N the
  // model after each epoch E as <run_dir>/checkpoints/epoch-E, deleting epoch-(E-N).
  TrainResult run();

  // Restores model, optimiser and loop state from a checkpoint directory written by run().
  void resume(const std::filesystem::path& checkpoint_dir);

  // One optimisation step on a batch; returns the (label-smoothed) loss.
  double train_step(const data::Batch& batch);

  const TrainerState& state() const { return state_; }
  CheckpointPaths last_checkpoint() const;
  CheckpointPaths best_checkpoint() const;
  CheckpointPaths epoch_checkpoint(int64_t epoch) const;  // epochs count from 1

 private:
  void save(const CheckpointPaths& paths, bool with_optimizer) const;
  data::BatchingOptions batching() const;

  models::TransformerSeq2Seq& model_;
  std::span<const data::Example> train_;
  TrainerOptions options_;
  std::unique_ptr<Optimizer> optimizer_;
  Schedule schedule_;
  TrainerState state_;
  double last_grad_norm_ = 0;
};

}  // namespace heed::train
