// The training stack end to end on a tiny synthetic task: config parsing and its errors,
// checkpoint round trips, a resumed run that reproduces an uninterrupted one bit for bit,
// early stopping, and the G2P checkpoint format.
#include "heed/train/trainer.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <unistd.h>

#include <gtest/gtest.h>

#include "heed/heed.h"
#include "heed/testing/numerics.h"
#include "heed/train/checkpoint.h"
#include "heed/train/config.h"
#include "heed/train/g2p.h"

namespace heed::train {
namespace {

namespace fs = std::filesystem;

// A fresh empty directory under the system temp dir, removed at scope end.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("heed_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// ---------------------------------------------------------------- config

constexpr const char* kFullConfig = R"(
[data]
cmudict = "x.dict"
pronunciations = "first"
max_train_words = 100
[model]
d_model = 64
heads = 4
encoder_layers = 2
decoder_layers = 1
ff_width = 128
dropout = 0.2
activation = "gelu"
norm_first = false
positions = "rotary"
tie = "none"
reverse_target = true
[optimizer]
name = "adamw"
lr = 2e-3
weight_decay = 0.01
clip_norm = 0.5
label_smoothing = 0.05
[schedule]
kind = "cosine"
warmup_steps = 10
total_steps = 500
[train]
run_dir = "runs/x"
seed = 7
batch_size = 32
time_limit_minutes = 1.5
patience = 3
matmul_precision = "bf16"
[decode]
beam_size = 4
nbest = 2
)";

TEST(Config, ParsesEveryKnownSection) {
  G2PConfig c = parse_g2p_config(kFullConfig);
  EXPECT_EQ(c.data.cmudict, "x.dict");
  EXPECT_EQ(c.data.pronunciations, data::Pronunciations::kFirst);
  EXPECT_EQ(c.data.max_train_words, 100);
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_EQ(c.model.encoder_layers, 2);
  EXPECT_EQ(c.model.activation, nn::Activation::kGelu);
  EXPECT_FALSE(c.model.norm_first);
  EXPECT_EQ(c.model.positions, nn::PositionKind::kRotary);
  EXPECT_EQ(c.model.tie, models::TieEmbeddings::kNone);
  EXPECT_TRUE(c.model.reverse_target);
  EXPECT_FALSE(parse_g2p_config("").model.reverse_target);
  EXPECT_EQ(c.model.seed, 7u);  // defaults to train.seed
  EXPECT_EQ(c.optim.kind, OptimizerKind::kAdamW);
  EXPECT_DOUBLE_EQ(c.optim.schedule.peak_lr, 2e-3);
  EXPECT_EQ(c.optim.schedule.kind, ScheduleKind::kCosine);
  EXPECT_EQ(c.optim.schedule.total_steps, 500);
  EXPECT_DOUBLE_EQ(c.loop.time_limit_minutes, 1.5);
  EXPECT_EQ(c.loop.matmul_precision, kernels::cpu::MatmulPrecision::kBf16);
  EXPECT_FALSE(parse_g2p_config("").loop.matmul_precision.has_value());  // the process's setting
  EXPECT_EQ(c.decode.beam_size, 4);
  EXPECT_EQ(c.decode.nbest, 2);
  // Defaults where the file is silent.
  EXPECT_EQ(c.decode.max_len, DecodeConfig{}.max_len);
  EXPECT_EQ(parse_g2p_config("").model.d_model, models::TransformerSeq2SeqOptions{}.d_model);
  // The JSON form reads back to the same config.
  G2PConfig back = g2p_config_from_json(g2p_config_to_json(c), "json");
  EXPECT_EQ(g2p_config_to_json(back), g2p_config_to_json(c));
}

TEST(Config, ErrorsNameTheKey) {
  auto err = [](const char* toml) { return error_of([&] { parse_g2p_config(toml, "bad.toml"); }); };
  EXPECT_EQ(err("[model]\nd_model = \"big\"\n"), "config: bad.toml: model.d_model must be an integer, got a string");
  EXPECT_NE(err("[model]\ndmodel = 3\n").find("unknown key 'model.dmodel'"), std::string::npos);
  EXPECT_NE(err("[model]\nd_model = 60\nheads = 8\n").find("model.heads must be positive and divide d_model = 60"),
            std::string::npos);
  EXPECT_NE(err("[model]\npositions = \"alibi\"\n").find("model.positions is \"alibi\", expected one of"),
            std::string::npos);
  EXPECT_NE(err("[optimizer]\nlr = -1\n").find("optimizer.lr must be positive"), std::string::npos);
  EXPECT_NE(err("[trainer]\nseed = 1\n").find("unknown key 'trainer'"), std::string::npos);
  EXPECT_NE(err("[train]\nbatch_size = 0\n").find("train.batch_size must be positive"), std::string::npos);
  EXPECT_NE(err("[decode]\nbeam_size = 2\nnbest = 3\n").find("decode.nbest must be in [1, beam_size = 2]"),
            std::string::npos);
  EXPECT_NE(err("[train]\nmatmul_precision = \"fp16\"\n").find("train.matmul_precision is \"fp16\", expected one of"),
            std::string::npos);
  EXPECT_NE(err("[model]\ndropout = 1.5\n").find("model.dropout must be in [0, 1)"), std::string::npos);
  EXPECT_NE(err("model = 3\n").find("'model' must be a [model] table"), std::string::npos);
  EXPECT_NE(err("[model\n").find("config: bad.toml:1:"), std::string::npos);  // TOML syntax: line and column
  EXPECT_NE(error_of([] { load_g2p_config("/nonexistent/x.toml"); }).find("cannot read /nonexistent/x.toml"),
            std::string::npos);
  // One line each.
  EXPECT_EQ(err("[model]\ndmodel = 3\n").find('\n'), std::string::npos);
}

// ---------------------------------------------------------------- checkpoints

models::TransformerSeq2SeqOptions tiny_model(uint64_t seed, double dropout = 0.0) {
  return {.src_vocab = 10, .tgt_vocab = 9, .d_model = 16, .heads = 2, .encoder_layers = 1, .decoder_layers = 1,
          .ff_width = 24, .dropout = dropout, .max_len = 16, .seed = seed};
}

TEST(Checkpoint, ModuleRoundTripAndErrors) {
  TempDir dir("ckpt");
  models::TransformerSeq2Seq a(tiny_model(1)), b(tiny_model(2));
  const fs::path file = dir.path / "m.safetensors";
  save_module(file, a, {{"step", "3"}});
  EXPECT_FALSE(testing::bitwise_equal(a.parameter("tgt_embed.weight"), b.parameter("tgt_embed.weight")));
  load_module(file, b);
  for (auto& [name, p] : a.named_parameters()) EXPECT_TRUE(testing::bitwise_equal(p, b.parameter(name))) << name;
  std::map<std::string, std::string> meta;
  NamedTensors raw = load_tensors(file, &meta);
  EXPECT_EQ(meta["step"], "3");
  EXPECT_EQ(raw.size(), a.named_parameters().size());

  models::TransformerSeq2SeqOptions other = tiny_model(1);
  other.ff_width = 32;
  models::TransformerSeq2Seq c(other);
  EXPECT_NE(error_of([&] { load_module(file, c); }).find("encoder.layers.0.linear1.weight' is [24, 16], the model expects [32, 16]"),
            std::string::npos);
  other = tiny_model(1);
  other.tie = models::TieEmbeddings::kNone;
  models::TransformerSeq2Seq d(other);
  EXPECT_NE(error_of([&] { load_module(file, d); }).find("has no tensor 'output_proj.weight'"), std::string::npos);
  EXPECT_THROW(load_module(dir.path / "missing.safetensors", b), Error);
}

// ---------------------------------------------------------------- training loop

// Reverse-the-source examples over tokens 4..9 (sources) / 4..8 (targets).
std::vector<data::Example> reverse_examples(int n) {
  std::vector<data::Example> out;
  for (int i = 0; i < n; ++i) {
    data::Example e;
    const int len = 2 + i % 4;
    for (int j = 0; j < len; ++j) e.src.push_back(4 + (i * 7 + j * 3) % 5);
    e.tgt.assign(e.src.rbegin(), e.src.rend());
    e.entry = i;
    out.push_back(e);
  }
  return out;
}

TrainerOptions loop_options(const fs::path& run_dir, int64_t max_steps) {
  TrainerOptions o;
  o.optim.schedule = ScheduleOptions{.kind = ScheduleKind::kInverseSqrt, .peak_lr = 3e-3, .warmup_steps = 4};
  o.optim.label_smoothing = 0.1;
  o.optim.clip_norm = 1.0;
  o.loop.run_dir = run_dir.string();
  o.loop.seed = 11;
  o.loop.batch_size = 8;
  o.loop.max_steps = max_steps;
  o.loop.log_every = 3;
  o.loop.patience = 0;
  o.loop.validate_at_stop = false;  // an extra validation at the interruption would change `best`
  return o;
}

// A deterministic validation metric: the loss of the model on a fixed batch, eval mode.
Validation fixed_batch_loss(const models::TransformerSeq2Seq& m, const std::vector<data::Example>& ex) {
  autograd::NoGradGuard no_grad;
  std::vector<int64_t> idx = {0, 1, 2, 3};
  data::Batch b = data::make_batch(ex, idx);
  Tensor logits = m.forward(Tensor::from_vector(b.src, {b.batch_size, b.src_len}),
                            Tensor::from_vector(b.src_lengths, {b.batch_size}),
                            Tensor::from_vector(b.tgt_in, {b.batch_size, b.tgt_len}));
  double loss = cross_entropy(logits, Tensor::from_vector(b.tgt_out, {b.batch_size, b.tgt_len}), {.ignore_index = 0}).item();
  return {loss, {{"valid_loss", loss}}};
}

TEST(Trainer, ResumedRunReproducesUninterruptedRun) {
  TempDir dir("resume");
  const std::vector<data::Example> ex = reverse_examples(37);  // 5 batches of <= 8 per epoch
  auto options = [&](const fs::path& run, int64_t steps) {
    TrainerOptions o = loop_options(run, steps);
    o.validate = [&](const models::TransformerSeq2Seq& m) { return fixed_batch_loss(m, ex); };
    return o;
  };
  // Uninterrupted: 13 steps (crosses two epoch ends with validation).
  models::TransformerSeq2Seq straight(tiny_model(5, 0.1));
  Seq2SeqTrainer ta(straight, ex, options(dir.path / "a", 13));
  TrainResult ra = ta.run();
  ASSERT_EQ(ra.losses.size(), 13u);
  EXPECT_EQ(ra.state.stop_reason, "max_steps");
  EXPECT_EQ(ra.state.epoch, 2);

  // Interrupted after 7 steps (mid-epoch), then resumed into a model with other weights.
  models::TransformerSeq2Seq first(tiny_model(5, 0.1));
  Seq2SeqTrainer tb(first, ex, options(dir.path / "b", 7));
  TrainResult rb = tb.run();
  ASSERT_EQ(rb.losses.size(), 7u);
  EXPECT_EQ(rb.state.batch_in_epoch, 2);
  models::TransformerSeq2Seq second(tiny_model(99, 0.1));
  Seq2SeqTrainer tc(second, ex, options(dir.path / "b", 13));
  tc.resume(tb.last_checkpoint().dir);
  EXPECT_EQ(tc.state().step, 7);
  TrainResult rc = tc.run();
  ASSERT_EQ(rc.losses.size(), 6u);

  for (size_t i = 0; i < 7; ++i) EXPECT_EQ(rb.losses[i], ra.losses[i]) << "step " << ra.losses[i].first;
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(rc.losses[i], ra.losses[7 + i]) << "step " << ra.losses[7 + i].first;
  for (auto& [name, p] : straight.named_parameters())
    EXPECT_TRUE(testing::bitwise_equal(p, second.parameter(name))) << name;
  EXPECT_EQ(rc.state.best_metric, ra.state.best_metric);
  EXPECT_EQ(rc.state.best_epoch, ra.state.best_epoch);
  // The loss went down, and the logs and checkpoints exist.
  EXPECT_LT(ra.losses.back().second, ra.losses.front().second);
  EXPECT_TRUE(fs::exists(ta.best_checkpoint().model()));
  EXPECT_TRUE(fs::exists(ta.last_checkpoint().optimizer()));
}

// train.matmul_precision = "bf16": the run's products go to bf16 (its losses differ from f32's,
// by less than 2 %: operands keep 8 significant bits, sums stay f32), the same seed gives the
// same losses, and the caller's
// precision is back afterwards; unset, the run takes the process's precision.
TEST(Trainer, Bf16ProductsTrainReproduciblyAndRestorePrecision) {
  if (!kernels::cpu::bf16_matmul_available()) GTEST_SKIP() << "no AMX-BF16 on this CPU";
  TempDir dir("bf16");
  const std::vector<data::Example> ex = reverse_examples(64);
  auto losses = [&](const char* run, std::optional<kernels::cpu::MatmulPrecision> precision) {
    TrainerOptions o = loop_options(dir.path / run, 12);
    o.loop.batch_size = 32;  // 32 x 2-5 tokens: more rows than the few-row (always f32) products
    o.loop.matmul_precision = precision;
    models::TransformerSeq2Seq m(tiny_model(5, 0.1));
    Seq2SeqTrainer t(m, ex, o);
    return t.run().losses;
  };
  const kernels::cpu::MatmulPrecision saved = kernels::cpu::matmul_precision();  // HEED_MATMUL_PRECISION
  kernels::cpu::set_matmul_precision(kernels::cpu::MatmulPrecision::kF32);
  const auto f32 = losses("f32", kernels::cpu::MatmulPrecision::kF32);
  const auto bf16 = losses("bf16", kernels::cpu::MatmulPrecision::kBf16);
  EXPECT_EQ(kernels::cpu::matmul_precision(), kernels::cpu::MatmulPrecision::kF32);
  EXPECT_EQ(losses("bf16-again", kernels::cpu::MatmulPrecision::kBf16), bf16);
  // Unset in the config: the process's precision (here set as HEED_MATMUL_PRECISION=bf16 would).
  kernels::cpu::set_matmul_precision(kernels::cpu::MatmulPrecision::kBf16);
  EXPECT_EQ(losses("inherit", std::nullopt), bf16);
  EXPECT_EQ(kernels::cpu::matmul_precision(), kernels::cpu::MatmulPrecision::kBf16);
  ASSERT_EQ(f32.size(), bf16.size());
  bool differ = false;
  for (size_t i = 0; i < f32.size(); ++i) {
    differ = differ || f32[i].second != bf16[i].second;
    EXPECT_NEAR(bf16[i].second, f32[i].second, 0.02 * f32[i].second) << "step " << f32[i].first;
  }
  EXPECT_TRUE(differ);
  EXPECT_LT(bf16.back().second, bf16.front().second);
  kernels::cpu::set_matmul_precision(saved);
}

TEST(Trainer, EarlyStoppingAndTornCheckpoints) {
  TempDir dir("early");
  const std::vector<data::Example> ex = reverse_examples(16);
  models::TransformerSeq2Seq model(tiny_model(3));
  TrainerOptions o = loop_options(dir.path, 0);
  o.loop.patience = 2;
  int calls = 0;
  o.validate = [&](const models::TransformerSeq2Seq&) { return Validation{calls++ == 0 ? 1.0 : 2.0, {}}; };
  io::JsonlWriter log((dir.path / "log.jsonl").string());
  o.log = &log;
  Seq2SeqTrainer t(model, ex, o);
  TrainResult r = t.run();
  EXPECT_EQ(r.state.stop_reason, "early_stopping");
  EXPECT_EQ(r.state.epoch, 3);
  EXPECT_EQ(r.state.best_epoch, 1);
  EXPECT_EQ(calls, 3);
  std::string text = read_text_file(dir.path / "log.jsonl");
  EXPECT_NE(text.find("\"event\":\"epoch\""), std::string::npos);
  EXPECT_NE(text.find("\"event\":\"step\""), std::string::npos);
  EXPECT_NE(text.find("\"stop_reason\":\"early_stopping\""), std::string::npos);

  // A checkpoint whose files disagree on the step is refused.
  CheckpointPaths last = t.last_checkpoint();
  TrainerState s = trainer_state_from_json(read_text_file(last.trainer()), "t");
  s.step += 1;
  write_text_atomically(last.trainer(), trainer_state_to_json(s));
  models::TransformerSeq2Seq other(tiny_model(3));
  Seq2SeqTrainer t2(other, ex, o);
  EXPECT_NE(error_of([&] { t2.resume(last.dir); }).find("disagree"), std::string::npos);
  EXPECT_NE(error_of([&] { t2.resume(dir.path / "nothing"); }).find("not a resumable checkpoint"), std::string::npos);
}

// keep_epochs = 2 leaves exactly the last two epochs' models; averaging them gives the
// element-wise mean, and checkpoints that do not match are refused with the file named.
TEST(Trainer, KeepsTheLastEpochsAndAveragesThem) {
  TempDir dir("average");
  const std::vector<data::Example> ex = reverse_examples(16);  // 2 batches per epoch
  models::TransformerSeq2Seq model(tiny_model(6));
  TrainerOptions o = loop_options(dir.path, 8);  // 4 epochs
  o.loop.keep_epochs = 2;
  o.checkpoint_config_json = "{\"model\": \"tiny\"}";
  Seq2SeqTrainer t(model, ex, o);
  TrainResult r = t.run();
  ASSERT_EQ(r.state.epoch, 4);
  EXPECT_FALSE(fs::exists(t.epoch_checkpoint(1).dir));
  EXPECT_FALSE(fs::exists(t.epoch_checkpoint(2).dir));
  ASSERT_TRUE(fs::exists(t.epoch_checkpoint(3).model()));
  ASSERT_TRUE(fs::exists(t.epoch_checkpoint(4).model()));
  // Epoch 4's model is the final one.
  NamedTensors e4 = load_tensors(t.epoch_checkpoint(4).model());
  for (const auto& [name, v] : e4) EXPECT_TRUE(testing::bitwise_equal(v, model.parameter(name))) << name;

  const fs::path out = dir.path / "avg";
  average_checkpoints({t.epoch_checkpoint(3).dir, t.epoch_checkpoint(4).dir}, out);
  NamedTensors e3 = load_tensors(t.epoch_checkpoint(3).model()), avg = load_tensors(out / "model.safetensors");
  ASSERT_EQ(avg.size(), e3.size());
  EXPECT_FALSE(testing::bitwise_equal(e3[0].second, e4[0].second));  // two different models were kept
  for (size_t j = 0; j < avg.size(); ++j) {
    ASSERT_EQ(avg[j].first, e3[j].first);
    const float* a = avg[j].second.data<float>();
    const float* x = e3[j].second.data<float>();
    const float* y = e4[j].second.data<float>();
    for (int64_t i = 0; i < avg[j].second.numel(); ++i)
      ASSERT_EQ(a[i], static_cast<float>((static_cast<double>(x[i]) + y[i]) / 2)) << avg[j].first << "[" << i << "]";
  }
  EXPECT_EQ(read_text_file(out / "config.json"), o.checkpoint_config_json);

  // Another configuration, another tensor shape, a missing directory.
  const fs::path odd = dir.path / "odd";
  fs::create_directories(odd);
  write_text_atomically(odd / "config.json", "{\"model\": \"other\"}");
  save_tensors(odd / "model.safetensors", e3);
  EXPECT_NE(error_of([&] { average_checkpoints({t.epoch_checkpoint(3).dir, odd}, dir.path / "x"); })
                .find("differs from"),
            std::string::npos);
  write_text_atomically(odd / "config.json", o.checkpoint_config_json);
  NamedTensors wrong = e3;
  wrong[0].second = Tensor::zeros({1, 2});
  save_tensors(odd / "model.safetensors", wrong);
  const std::string err = error_of([&] { average_checkpoints({t.epoch_checkpoint(3).dir, odd}, dir.path / "x"); });
  EXPECT_NE(err.find((odd / "model.safetensors").string()), std::string::npos) << err;
  EXPECT_NE(err.find(wrong[0].first), std::string::npos) << err;
  EXPECT_NE(error_of([&] { average_checkpoints({dir.path / "missing"}, dir.path / "x"); })
                .find((dir.path / "missing").string()),
            std::string::npos);
  EXPECT_NE(error_of([&] { average_checkpoints({t.epoch_checkpoint(3).dir, t.epoch_checkpoint(3).dir}, out); })
                .find("given twice"),
            std::string::npos);
  // --overwrite onto a full training checkpoint replaces it whole: no stale optimizer state.
  average_checkpoints({t.epoch_checkpoint(3).dir, t.epoch_checkpoint(4).dir}, t.last_checkpoint().dir);
  EXPECT_FALSE(fs::exists(t.last_checkpoint().optimizer()));
  EXPECT_FALSE(fs::exists(t.last_checkpoint().trainer()));
  EXPECT_TRUE(fs::exists(t.last_checkpoint().model()));
}

TEST(Trainer, ValidatesTheFinalModelWhenStoppedMidEpoch) {
  TempDir dir("stop");
  const std::vector<data::Example> ex = reverse_examples(37);
  models::TransformerSeq2Seq model(tiny_model(4));
  TrainerOptions o = loop_options(dir.path, 3);  // stops inside the first epoch
  o.loop.validate_at_stop = true;
  int calls = 0;
  o.validate = [&](const models::TransformerSeq2Seq& m) {
    ++calls;
    EXPECT_FALSE(m.training());
    return fixed_batch_loss(m, ex);
  };
  Seq2SeqTrainer t(model, ex, o);
  TrainResult r = t.run();
  EXPECT_EQ(r.state.stop_reason, "max_steps");
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(std::isfinite(r.state.best_metric));
  EXPECT_TRUE(fs::exists(t.best_checkpoint().model()));
}

TEST(G2PCheckpoint, SavedModelLoadsAndPredicts) {
  TempDir dir("g2p");
  G2PConfig config = parse_g2p_config("[model]\nd_model = 16\nheads = 2\nencoder_layers = 1\ndecoder_layers = 1\n"
                                      "ff_width = 16\n[decode]\nbeam_size = 3\nnbest = 2\nmax_len = 6\n");
  data::G2PVocabs vocabs{data::Vocab("character", {"a", "b", "c"}), data::Vocab("phoneme", {"AH", "B", "K"})};
  models::TransformerSeq2Seq model(g2p_model_options(config, vocabs));
  CheckpointPaths paths{dir.path};
  save_module(paths.model(), model);
  write_text_atomically(paths.config(), g2p_checkpoint_json(config, vocabs));
  G2PModel loaded = load_g2p_model(dir.path);
  EXPECT_TRUE(loaded.vocabs.chars == vocabs.chars);
  EXPECT_TRUE(loaded.vocabs.phonemes == vocabs.phonemes);
  EXPECT_EQ(loaded.config.decode.beam_size, 3);
  EXPECT_TRUE(testing::bitwise_equal(loaded.model->parameter("tgt_embed.weight"), model.parameter("tgt_embed.weight")));
  std::vector<std::string> words = {"CAB", "a"};
  std::vector<WordPrediction> p = predict_words(*loaded.model, loaded.vocabs, words, decode_options(loaded.config.decode));
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].word, "CAB");
  EXPECT_EQ(p[0].phonemes.size(), 2u);  // n-best
  EXPECT_GE(p[0].scores[0], p[0].scores[1]);
  std::vector<std::string> bad = {"abz"};
  EXPECT_NE(error_of([&] { predict_words(*loaded.model, loaded.vocabs, bad, decode_options(loaded.config.decode)); })
                .find("'z'"),
            std::string::npos);
}

}  // namespace
}  // namespace heed::train
