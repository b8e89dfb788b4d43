// The seq2seq training loop, its checkpoints and exact resumption.
#include "heed/train/trainer.h"

#include <chrono>
#include <cmath>

#include <nlohmann/json.hpp>

#include "heed/autograd/graph.h"
#include "heed/data/split.h"
#include "heed/data/vocab.h"
#include "heed/io/progress.h"
#include "heed/ops/loss.h"
#include "heed/train/clip.h"

namespace heed::train {

namespace {

// Dropout seed of a step: every step draws fresh masks, and a resumed run draws the same ones.
uint64_t step_seed(uint64_t seed, int64_t step) {
  return data::mix64(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) + 1);
}

Tensor to_tensor(const std::vector<int64_t>& v, const Shape& shape) { return Tensor::from_vector(v, shape); }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::string trainer_state_to_json(const TrainerState& s) {
  nlohmann::json j{{"format", "heed.trainer_state"},
                   {"version", 1},
                   {"step", s.step},
                   {"epoch", s.epoch},
                   {"batch_in_epoch", s.batch_in_epoch},
                   {"epoch_loss_sum", s.epoch_loss_sum},
                   {"epoch_tokens", s.epoch_tokens},
                   {"best_metric", std::isfinite(s.best_metric) ? nlohmann::json(s.best_metric) : nlohmann::json()},
                   {"best_epoch", s.best_epoch},
                   {"bad_epochs", s.bad_epochs},
                   {"elapsed_s", s.elapsed_s},
                   {"stop_reason", s.stop_reason}};
  return j.dump(2);
}

TrainerState trainer_state_from_json(std::string_view text, std::string_view source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("trainer state: ", source, ": not valid JSON (", e.what(), ")");
  }
  HEED_CHECK(j.is_object() && j.value("format", "") == "heed.trainer_state", "trainer state: ", source,
             ": not a heed trainer state file");
  TrainerState s;
  try {
    s.step = j.at("step").get<int64_t>();
    s.epoch = j.at("epoch").get<int64_t>();
    s.batch_in_epoch = j.at("batch_in_epoch").get<int64_t>();
    s.epoch_loss_sum = j.at("epoch_loss_sum").get<double>();
    s.epoch_tokens = j.at("epoch_tokens").get<double>();
    s.best_metric = j.at("best_metric").is_null() ? std::numeric_limits<double>::infinity()
                                                  : j.at("best_metric").get<double>();
    s.best_epoch = j.at("best_epoch").get<int64_t>();
    s.bad_epochs = j.at("bad_epochs").get<int64_t>();
    s.elapsed_s = j.at("elapsed_s").get<double>();
    s.stop_reason = j.at("stop_reason").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    fail("trainer state: ", source, ": missing or mistyped field (", e.what(), ")");
  }
  return s;
}

Seq2SeqTrainer::Seq2SeqTrainer(models::TransformerSeq2Seq& model, std::span<const data::Example> train,
                               TrainerOptions options)
    : model_(model),
      train_(train),
      options_(std::move(options)),
      optimizer_(make_optimizer(options_.optim, model.named_parameters())),
      schedule_(options_.optim.schedule) {
  HEED_CHECK(!train_.empty(), "trainer: no training examples");
}

data::BatchingOptions Seq2SeqTrainer::batching() const {
  return data::BatchingOptions{.max_batch_size = options_.loop.batch_size, .max_tokens = options_.loop.max_tokens,
                               .shuffle = true, .seed = options_.loop.seed};
}

CheckpointPaths Seq2SeqTrainer::last_checkpoint() const {
  return {std::filesystem::path(options_.loop.run_dir) / "checkpoints" / "last"};
}
CheckpointPaths Seq2SeqTrainer::best_checkpoint() const {
  return {std::filesystem::path(options_.loop.run_dir) / "checkpoints" / "best"};
}
CheckpointPaths Seq2SeqTrainer::epoch_checkpoint(int64_t epoch) const {
  return {std::filesystem::path(options_.loop.run_dir) / "checkpoints" / ("epoch-" + std::to_string(epoch))};
}

double Seq2SeqTrainer::train_step(const data::Batch& b) {
  model_.train();
  const Tensor src = to_tensor(b.src, {b.batch_size, b.src_len});
  const Tensor src_lengths = to_tensor(b.src_lengths, {b.batch_size});
  const Tensor tgt_in = to_tensor(b.tgt_in, {b.batch_size, b.tgt_len});
  const Tensor tgt_out = to_tensor(b.tgt_out, {b.batch_size, b.tgt_len});
  optimizer_->zero_grad();
  Tensor logits = model_.forward(src, src_lengths, tgt_in, step_seed(options_.loop.seed, state_.step));  // [B, T, V]
  Tensor loss = cross_entropy(logits, tgt_out, {.label_smoothing = options_.optim.label_smoothing,
                                                .ignore_index = data::kPadId});
  const double value = loss.item();
  loss.backward();
  std::vector<Tensor> params = model_.parameters();
  last_grad_norm_ = grad_norm(params);
  // Clipping is folded into the update (one pass over the gradients fewer).
  const double clip = options_.optim.clip_norm > 0 ? clip_coefficient(last_grad_norm_, options_.optim.clip_norm) : 1.0;
  ++state_.step;
  optimizer_->set_lr(schedule_.lr(state_.step));
  if (std::isfinite(last_grad_norm_)) optimizer_->step(clip);  // a non-finite gradient skips the update
  return value;
}

void Seq2SeqTrainer::save(const CheckpointPaths& paths, bool with_optimizer) const {
  std::filesystem::create_directories(paths.dir);
  const std::map<std::string, std::string> meta{{"format", "heed.checkpoint"},
                                                {"step", std::to_string(state_.step)}};
  save_module(paths.model(), model_, meta);
  write_text_atomically(paths.config(), options_.checkpoint_config_json);
  if (with_optimizer) save_tensors(paths.optimizer(), optimizer_->state(), meta);
  write_text_atomically(paths.trainer(), trainer_state_to_json(state_));  // last: marks the set complete
}

void Seq2SeqTrainer::resume(const std::filesystem::path& dir) {
  const CheckpointPaths paths{dir};
  HEED_CHECK(std::filesystem::exists(paths.trainer()), "resume: ", dir.string(),
             " is not a resumable checkpoint (no trainer.json)");
  TrainerState s = trainer_state_from_json(read_text_file(paths.trainer()), paths.trainer().string());
  std::map<std::string, std::string> model_meta, opt_meta;
  NamedTensors opt_state = load_tensors(paths.optimizer(), &opt_meta);
  load_tensors(paths.model(), &model_meta);
  const std::string step = std::to_string(s.step);
  HEED_CHECK(model_meta["step"] == step && opt_meta["step"] == step, "resume: ", dir.string(),
             ": model (step ", model_meta["step"], "), optimizer (step ", opt_meta["step"], ") and trainer.json (step ",
             step, ") disagree; the checkpoint was not written completely");
  load_module(paths.model(), model_);
  optimizer_->load_state(opt_state);
  state_ = s;
  state_.stop_reason.clear();
}

TrainResult Seq2SeqTrainer::run() {
  const LoopConfig& loop = options_.loop;
  // The run's product precision, if it sets one, for its steps and validations; the caller's
  // is restored after.
  struct PrecisionScope {
    kernels::cpu::MatmulPrecision saved = kernels::cpu::matmul_precision();
    explicit PrecisionScope(kernels::cpu::MatmulPrecision p) { kernels::cpu::set_matmul_precision(p); }
    ~PrecisionScope() { kernels::cpu::set_matmul_precision(saved); }
  } precision_scope(loop.matmul_precision.value_or(kernels::cpu::matmul_precision()));
  const auto t0 = std::chrono::steady_clock::now();
  const double elapsed_before = state_.elapsed_s;
  auto elapsed = [&] { return elapsed_before + seconds_since(t0); };
  TrainResult result;
  auto stop = [&](const char* reason) {
    state_.stop_reason = reason;
    state_.elapsed_s = elapsed();
  };
  auto log_record = [&](io::JsonlRecord& r) {
    if (options_.log != nullptr) options_.log->write(r);
  };

  while (state_.stop_reason.empty()) {
    if (state_.epoch >= loop.max_epochs) {
      stop("max_epochs");
      break;
    }
    const std::vector<std::vector<int64_t>> plan = data::plan_batches(train_, batching(), state_.epoch);
    io::ProgressOptions progress_options;
    progress_options.label = "epoch " + std::to_string(state_.epoch + 1);
    progress_options.unit = "tok";
    io::ProgressBar bar(options_.progress, static_cast<int64_t>(plan.size()),
                        progress_options);
    if (state_.batch_in_epoch > 0) bar.advance(state_.batch_in_epoch, 0);
    auto window_start = std::chrono::steady_clock::now();
    double window_tokens = 0, window_loss = 0;
    int64_t window_steps = 0;
    while (state_.batch_in_epoch < static_cast<int64_t>(plan.size())) {
      if (loop.max_steps > 0 && state_.step >= loop.max_steps) {
        stop("max_steps");
        break;
      }
      if (loop.time_limit_minutes > 0 && elapsed() >= loop.time_limit_minutes * 60) {
        stop("time_limit");
        break;
      }
      const data::Batch batch = data::make_batch(train_, plan[state_.batch_in_epoch]);
      const double loss = train_step(batch);
      const double tokens = static_cast<double>(batch.tgt_tokens());
      ++state_.batch_in_epoch;
      state_.epoch_loss_sum += loss * tokens;
      state_.epoch_tokens += tokens;
      result.losses.emplace_back(state_.step, loss);
      window_tokens += tokens;
      window_loss += loss;
      ++window_steps;
      bar.set("loss", loss);
      bar.set("lr", optimizer_->lr(), 3);
      bar.advance(1, tokens);
      if (state_.step % loop.log_every == 0) {
        const double dt = seconds_since(window_start);
        io::JsonlRecord r;
        r.add("event", "step").add("step", state_.step).add("epoch", state_.epoch + 1);
        r.add("loss", window_loss / window_steps).add("lr", optimizer_->lr()).add("grad_norm", last_grad_norm_);
        r.add("tokens_per_s", dt > 0 ? window_tokens / dt : 0.0).add("elapsed_s", elapsed());
        log_record(r);
        window_start = std::chrono::steady_clock::now();
        window_tokens = window_loss = 0;
        window_steps = 0;
      }
      if (loop.checkpoint_every > 0 && state_.step % loop.checkpoint_every == 0) {
        state_.elapsed_s = elapsed();
        save(last_checkpoint(), true);
      }
    }
    bar.finish();
    const bool mid_epoch_stop = !state_.stop_reason.empty();
    if (mid_epoch_stop && !(loop.validate_at_stop && options_.validate && state_.batch_in_epoch > 0)) break;

    // End of an epoch (or a stop mid-epoch): validate, keep the best, maybe stop early.
    io::JsonlRecord r;
    r.add("event", mid_epoch_stop ? "stop_validation" : "epoch").add("epoch", state_.epoch + 1).add("step", state_.step);
    r.add("train_loss", state_.epoch_tokens > 0 ? state_.epoch_loss_sum / state_.epoch_tokens : 0.0);
    bool improved = false;
    if (options_.validate) {
      model_.eval();
      const Validation v = options_.validate(model_);
      for (const auto& [name, value] : v.values) r.add(name, value);
      improved = v.metric < state_.best_metric;
      if (improved) {
        state_.best_metric = v.metric;
        state_.best_epoch = state_.epoch + 1;
        if (!mid_epoch_stop) state_.bad_epochs = 0;
      } else if (!mid_epoch_stop) {
        ++state_.bad_epochs;
      }
    }
    if (mid_epoch_stop) {
      r.add("best", improved).add("elapsed_s", elapsed());
      log_record(r);
      if (improved) save(best_checkpoint(), false);
      break;
    }
    ++state_.epoch;
    state_.batch_in_epoch = 0;
    state_.epoch_loss_sum = state_.epoch_tokens = 0;
    state_.elapsed_s = elapsed();
    r.add("best", improved).add("elapsed_s", state_.elapsed_s);
    log_record(r);
    if (improved || !options_.validate) save(best_checkpoint(), false);
    if (options_.validate && loop.patience > 0 && state_.bad_epochs >= loop.patience) stop("early_stopping");
    if (loop.keep_epochs > 0) {
      save(epoch_checkpoint(state_.epoch), false);
      // Every older epoch-K goes, also those a resumed run with a smaller keep_epochs left.
      for (int64_t k = state_.epoch - loop.keep_epochs; k >= 1; --k) {
        const auto dir = epoch_checkpoint(k).dir;
        if (!std::filesystem::exists(dir)) break;
        std::filesystem::remove_all(dir);
      }
    }
    save(last_checkpoint(), true);
  }
  state_.elapsed_s = elapsed();
  save(last_checkpoint(), true);
  io::JsonlRecord end;
  end.add("event", "end").add("step", state_.step).add("epoch", state_.epoch).add("stop_reason", state_.stop_reason);
  end.add("best_metric", state_.best_metric).add("best_epoch", state_.best_epoch).add("elapsed_s", state_.elapsed_s);
  log_record(end);
  result.state = state_;
  return result;
}

}  // namespace heed::train
