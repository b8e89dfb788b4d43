// The `heed` command-line tool: train / eval / predict / average for grapheme-to-phoneme models.
// Every heed::Error reaching main is printed as one line and exits with status 1.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "heed/data/utf8.h"
#include "heed/io/jsonl.h"
#include "heed/io/progress.h"
#include "heed/tensor/error.h"
#include "heed/train/checkpoint.h"
#include "heed/train/config.h"
#include "heed/train/g2p.h"
#include "heed/train/trainer.h"

namespace fs = std::filesystem;
using namespace heed;

namespace {

std::string percent(double rate) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f%%", 100.0 * rate);
  return buf;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : " ") + p;
  return out;
}

// The lexicon entries of split `name` (test, validation or train).
std::vector<int64_t> split_entries(const data::LexiconSplit& split, const std::string& name, const char* command) {
  if (name == "test") return split.test;
  if (name == "validation") return split.validation;
  if (name == "train") return split.train;
  fail(command, ": --split must be test, validation or train, got '", name, "'");
}

// ---------------------------------------------------------------- train

struct TrainArgs {
  std::string config;
  bool resume = false;
  bool overwrite = false;
  bool quiet = false;
};

int run_train(const TrainArgs& args) {
  train::G2PConfig config = train::load_g2p_config(args.config);
  if (config.loop.threads > 0) omp_set_num_threads(static_cast<int>(config.loop.threads));
  const fs::path run_dir(config.loop.run_dir);
  const train::CheckpointPaths last{run_dir / "checkpoints" / "last"};
  const bool have_last = fs::exists(last.trainer());
  const bool have_run = have_last || fs::exists(run_dir / "train.jsonl") || fs::exists(run_dir / "checkpoints");
  HEED_CHECK(!args.resume || have_last, "train: --resume given but ", last.dir.string(), " holds no checkpoint");
  HEED_CHECK(args.resume || args.overwrite || !have_run, "train: ", run_dir.string(),
             " already holds a run; pass --resume to continue it or --overwrite to start again");
  if (args.overwrite && !args.resume) fs::remove_all(run_dir);
  fs::create_directories(run_dir);

  train::G2PData data = train::load_g2p_data(config.data);
  // A right-to-left model learns each pronunciation backwards; decoding reads it back.
  if (config.model.reverse_target) train::reverse_targets(data.train);
  models::TransformerSeq2Seq model(train::g2p_model_options(config, data.vocabs));
  const std::string checkpoint_json = train::g2p_checkpoint_json(config, data.vocabs);
  if (args.resume) {
    const train::G2PConfig saved = train::load_g2p_model(last.dir).config;
    HEED_CHECK(train::model_config_to_json(train::g2p_model_options(saved, data.vocabs)) ==
                   train::model_config_to_json(train::g2p_model_options(config, data.vocabs)),
               "train: --resume: the model in ", args.config, " differs from the one in ", last.dir.string());
  }
  const bool bf16_asked =
      config.loop.matmul_precision.value_or(kernels::cpu::matmul_precision()) == kernels::cpu::MatmulPrecision::kBf16;
  const bool bf16 = bf16_asked && kernels::cpu::bf16_matmul_available();
  if (bf16_asked && !bf16)
    std::fprintf(stderr, "heed train: warning: bf16 products asked for (train.matmul_precision or "
                         "HEED_MATMUL_PRECISION), but this CPU has no usable AMX-BF16; products run in f32\n");
  std::fprintf(stderr,
               "heed train: %zu training pairs (%zu words), %zu validation words; vocabularies %ld characters, "
               "%ld phonemes; model %.2fM parameters; %d threads; products in %s\n",
               data.train.size(), data.train_entries.size(), data.valid_entries.size(),
               static_cast<long>(data.vocabs.chars.size()), static_cast<long>(data.vocabs.phonemes.size()),
               static_cast<double>(model.parameter_count()) / 1e6, omp_get_max_threads(),
               bf16 ? "bf16 (AMX)" : "f32");

  io::JsonlWriter log((run_dir / "train.jsonl").string());
  log.write_json(std::string("{\"event\":\"config\",\"products\":\"") + (bf16 ? "bf16" : "f32") +
                 "\",\"config\":" + train::g2p_config_to_json(config) + "}");
  const train::G2PDecodeOptions valid_decode = train::decode_options(config.decode, true);
  train::TrainerOptions options{.optim = config.optim,
                                .loop = config.loop,
                                .checkpoint_config_json = checkpoint_json,
                                .validate =
                                    [&](const models::TransformerSeq2Seq& m) {
                                      train::SequenceErrorRates r = train::evaluate_g2p(
                                          m, data.lexicon, data.valid_entries, data.vocabs, valid_decode);
                                      std::fprintf(stderr, "  validation: WER %s PER %s (%ld words)\n",
                                                   percent(r.wer()).c_str(), percent(r.per()).c_str(),
                                                   static_cast<long>(r.words));
                                      return train::Validation{r.wer(),
                                                               {{"valid_wer", r.wer()}, {"valid_per", r.per()}}};
                                    },
                                .progress = args.quiet ? nullptr : stderr,
                                .log = &log};
  train::Seq2SeqTrainer trainer(model, data.train, options);
  if (args.resume) {
    trainer.resume(last.dir);
    std::fprintf(stderr, "heed train: resumed at step %ld (epoch %ld)\n", static_cast<long>(trainer.state().step),
                 static_cast<long>(trainer.state().epoch + 1));
  }
  train::TrainResult result = trainer.run();
  const train::TrainerState& s = result.state;
  std::printf("stopped (%s) after %ld steps, %ld full epochs, %.0f s; best validation WER %s (epoch %ld)\n",
              s.stop_reason.c_str(), static_cast<long>(s.step), static_cast<long>(s.epoch), s.elapsed_s,
              std::isfinite(s.best_metric) ? percent(s.best_metric).c_str() : "n/a", static_cast<long>(s.best_epoch));
  std::printf("best checkpoint: %s\nlog: %s\n", trainer.best_checkpoint().dir.string().c_str(),
              (run_dir / "train.jsonl").string().c_str());
  return 0;
}

// ---------------------------------------------------------------- eval

// Checkpoints decoded together: one model, or an ensemble (each step's next-token
// distribution is the mean of theirs). The first one's run config supplies the data path,
// thread count and decoding defaults.
struct LoadedModels {
  std::vector<train::G2PModel> loaded;
  std::vector<const models::TransformerSeq2Seq*> ptrs;
  const train::G2PModel& first() const { return loaded.front(); }
};

LoadedModels load_models(const std::vector<std::string>& dirs, const char* command) {
  HEED_CHECK(!dirs.empty(), command, ": no --model given");
  LoadedModels out;
  for (const std::string& d : dirs) {
    out.loaded.push_back(train::load_g2p_model(d));
    const data::G2PVocabs& v = out.loaded.back().vocabs;
    HEED_CHECK(v.chars == out.first().vocabs.chars && v.phonemes == out.first().vocabs.phonemes, command,
               ": --model ", d, " has other vocabularies than ", dirs.front(),
               "; the models of an ensemble must share their characters and phonemes");
  }
  for (const train::G2PModel& m : out.loaded) out.ptrs.push_back(m.model.get());
  return out;
}

struct EvalArgs {
  std::vector<std::string> models;
  std::string split = "test";
  std::string data;  // cmudict path; default: the one the model was trained on
  int64_t beam = 0;  // 0: the model's config
  double alpha = -1;
  int64_t limit = 0;
  bool quiet = false;
};

int run_eval(const EvalArgs& args) {
  const LoadedModels models = load_models(args.models, "eval");
  const train::G2PModel& g2p = models.first();
  train::DataConfig data_config = g2p.config.data;
  if (!args.data.empty()) data_config.cmudict = args.data;
  if (g2p.config.loop.threads > 0) omp_set_num_threads(static_cast<int>(g2p.config.loop.threads));
  data::Lexicon lexicon = data::load_cmudict(data_config.cmudict);
  data::LexiconSplit split = data::split_lexicon(lexicon);
  std::vector<int64_t> entries = split_entries(split, args.split, "eval");
  if (args.limit > 0 && static_cast<int64_t>(entries.size()) > args.limit) entries.resize(args.limit);

  train::G2PDecodeOptions decode = train::decode_options(g2p.config.decode);
  if (args.beam > 0) decode.beam_size = args.beam;
  if (args.alpha >= 0) decode.alpha = args.alpha;
  decode.nbest = 1;
  io::ProgressOptions po;
  po.label = "eval " + args.split;
  po.unit = "word";
  io::ProgressBar bar(args.quiet ? nullptr : stderr, static_cast<int64_t>(entries.size()), po);
  int64_t done = 0;
  train::SequenceErrorRates r =
      train::evaluate_g2p(models.ptrs, lexicon, entries, g2p.vocabs, decode, [&](int64_t n) {
        bar.advance(n - done, static_cast<double>(n - done));
        done = n;
      });
  bar.finish();
  std::printf("%s: WER %s PER %s (%ld words, beam %ld, alpha %.2f", args.split.c_str(), percent(r.wer()).c_str(),
              percent(r.per()).c_str(), static_cast<long>(r.words), static_cast<long>(decode.beam_size), decode.alpha);
  if (models.ptrs.size() > 1) std::printf(", ensemble of %zu models", models.ptrs.size());
  std::printf(")\n");
  return 0;
}

// ---------------------------------------------------------------- predict

struct PredictArgs {
  std::vector<std::string> models;
  std::vector<std::string> words;
  int64_t nbest = 0;
  int64_t beam = 0;
  double alpha = -1;
};

int run_predict(const PredictArgs& args) {
  const LoadedModels models = load_models(args.models, "predict");
  const train::G2PModel& g2p = models.first();
  std::vector<std::string> words = args.words;
  if (words.empty()) {
    // Words from stdin, whitespace-separated; a line that is not UTF-8 is named by number
    // before any word is predicted.
    std::string line;
    for (int64_t n = 1; std::getline(std::cin, line); ++n) {
      const std::optional<size_t> bad = data::find_invalid_utf8(line);
      HEED_CHECK(!bad, "predict: stdin line ", n, " is not valid UTF-8 at byte ", bad.value_or(0),
                 "; expected one or more words of UTF-8 text per line");
      std::istringstream in(line);
      for (std::string w; in >> w;) words.push_back(w);
    }
  }
  train::G2PDecodeOptions decode = train::decode_options(g2p.config.decode);
  if (args.beam > 0) decode.beam_size = args.beam;
  if (args.alpha >= 0) decode.alpha = args.alpha;
  if (args.nbest > 0) decode.nbest = args.nbest;
  HEED_CHECK(decode.nbest <= decode.beam_size, "predict: --nbest ", decode.nbest, " exceeds the beam size ",
             decode.beam_size, " (pass --beam)");
  if (decode.beam_size == 1) decode.nbest = 1;
  for (const train::WordPrediction& p : train::predict_words(models.ptrs, g2p.vocabs, words, decode))
    for (size_t i = 0; i < p.phonemes.size(); ++i)
      std::printf("%s\t%s\t%.4f\n", p.word.c_str(), join(p.phonemes[i]).c_str(), p.scores[i]);
  return 0;
}

// ---------------------------------------------------------------- lexicon / score
// For other G2P systems (baselines such as Phonetisaurus or Sequitur): `lexicon` writes a
// split as `word PH PH ...` lines, one per pronunciation; `score` reads such a system's
// output and prints WER/PER with heed's own metrics against the split's references.

struct SplitArgs {
  std::string split = "test";
  std::string data = "data/cmudict/cmudict.dict";
  bool keep_stress = false;
  std::string hypotheses;  // score only
};

int run_lexicon(const SplitArgs& args) {
  data::Lexicon lexicon = data::load_cmudict(args.data, {.keep_stress = args.keep_stress});
  for (int64_t e : split_entries(data::split_lexicon(lexicon), args.split, "lexicon"))
    for (const std::vector<std::string>& pron : lexicon.entries[e].pronunciations)
      std::printf("%s %s\n", lexicon.entries[e].word.c_str(), join(pron).c_str());
  return 0;
}

int run_score(const SplitArgs& args) {
  data::Lexicon lexicon = data::load_cmudict(args.data, {.keep_stress = args.keep_stress});
  const std::vector<int64_t> entries = split_entries(data::split_lexicon(lexicon), args.split, "score");
  HEED_CHECK(fs::is_regular_file(args.hypotheses), "score: --hyp ", args.hypotheses,
             " is not a readable file; expected a G2P system's output, one `word PH PH ...` line per word");
  const data::Lexicon hypotheses = data::load_cmudict(args.hypotheses, {.keep_stress = args.keep_stress});
  const train::SequenceErrorRates r = train::score_g2p_hypotheses(lexicon, entries, hypotheses, args.hypotheses);
  std::printf("%s: WER %s PER %s (%ld words, hypotheses from %s)\n", args.split.c_str(), percent(r.wer()).c_str(),
              percent(r.per()).c_str(), static_cast<long>(r.words), args.hypotheses.c_str());
  return 0;
}

// ---------------------------------------------------------------- average

struct AverageArgs {
  std::vector<std::string> models;
  std::string out;
  bool overwrite = false;
};

int run_average(const AverageArgs& args) {
  HEED_CHECK(args.overwrite || !fs::exists(args.out), "average: ", args.out,
             " already exists; pass --overwrite to replace it");
  std::vector<fs::path> dirs(args.models.begin(), args.models.end());
  for (const fs::path& d : dirs)
    HEED_CHECK(fs::weakly_canonical(d) != fs::weakly_canonical(args.out), "average: --out ", args.out,
               " is also one of the checkpoints being averaged");
  train::average_checkpoints(dirs, args.out);
  std::printf("averaged %zu checkpoints into %s\n", dirs.size(), args.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"heed: attention-based neural networks (grapheme-to-phoneme: train, eval, predict)", "heed"};
  app.require_subcommand(1);

  TrainArgs train_args;
  CLI::App* train_cmd = app.add_subcommand("train", "train a G2P Transformer from a TOML config");
  train_cmd->add_option("--config", train_args.config, "TOML config file (e.g. configs/g2p-small.toml)")->required();
  train_cmd->add_flag("--resume", train_args.resume, "continue the run in the config's run_dir from its last checkpoint");
  train_cmd->add_flag("--overwrite", train_args.overwrite, "delete an existing run in run_dir and start again");
  train_cmd->add_flag("--quiet", train_args.quiet, "no progress bar");

  EvalArgs eval_args;
  CLI::App* eval_cmd = app.add_subcommand("eval", "word and phoneme error rates of a checkpoint on a CMUdict split");
  eval_cmd->add_option("--model", eval_args.models,
                        "checkpoint directory (e.g. runs/g2p-small/checkpoints/best); give it several times to "
                        "decode with an ensemble (the mean of the models' next-token distributions)")
      ->required()
      ->allow_extra_args(false);  // one directory per --model
  eval_cmd->add_option("--split", eval_args.split, "test (default), validation or train");
  eval_cmd->add_option("--data", eval_args.data, "CMUdict file (default: the one the model was trained on)");
  eval_cmd->add_option("--beam", eval_args.beam, "beam size (default: the model's config; 1 = greedy)");
  eval_cmd->add_option("--alpha", eval_args.alpha, "length normalisation exponent (default: the model's config)");
  eval_cmd->add_option("--limit", eval_args.limit, "only the first N words of the split");
  eval_cmd->add_flag("--quiet", eval_args.quiet, "no progress bar");

  PredictArgs predict_args;
  CLI::App* predict_cmd = app.add_subcommand("predict", "pronunciations of words (arguments, or stdin one per line)");
  predict_cmd->add_option("--model", predict_args.models, "checkpoint directory; several times for an ensemble")
      ->required()
      ->allow_extra_args(false);  // one directory per --model: the words follow
  predict_cmd->add_option("--nbest", predict_args.nbest, "hypotheses per word (default: the model's config)");
  predict_cmd->add_option("--beam", predict_args.beam, "beam size (default: the model's config; 1 = greedy)");
  predict_cmd->add_option("--alpha", predict_args.alpha, "length normalisation exponent");
  predict_cmd->add_option("words", predict_args.words, "words to pronounce");

  AverageArgs average_args;
  CLI::App* average_cmd =
      app.add_subcommand("average", "element-wise mean of checkpoints of one run (e.g. its last epochs, keep_epochs)");
  average_cmd->add_option("--out", average_args.out, "checkpoint directory to write")->required();
  average_cmd->add_flag("--overwrite", average_args.overwrite, "replace an existing --out");
  average_cmd->add_option("models", average_args.models, "checkpoint directories (runs/NAME/checkpoints/epoch-E ...)")
      ->required();

  SplitArgs lexicon_args;
  CLI::App* lexicon_cmd =
      app.add_subcommand("lexicon", "write a CMUdict split as `word PH PH ...` lines (for other G2P systems)");
  lexicon_cmd->add_option("--split", lexicon_args.split, "test (default), validation or train");
  lexicon_cmd->add_option("--data", lexicon_args.data, "CMUdict file (default: data/cmudict/cmudict.dict)");
  lexicon_cmd->add_flag("--keep-stress", lexicon_args.keep_stress, "keep the vowels' stress digits");

  SplitArgs score_args;
  CLI::App* score_cmd = app.add_subcommand(
      "score", "WER/PER of another system's pronunciations (`word PH PH ...` lines) on a CMUdict split");
  score_cmd->add_option("--hyp", score_args.hypotheses, "the system's output; a word's first line is its best")
      ->required();
  score_cmd->add_option("--split", score_args.split, "test (default), validation or train");
  score_cmd->add_option("--data", score_args.data, "CMUdict file (default: data/cmudict/cmudict.dict)");
  score_cmd->add_flag("--keep-stress", score_args.keep_stress, "score with stress digits");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (train_cmd->parsed()) return run_train(train_args);
    if (eval_cmd->parsed()) return run_eval(eval_args);
    if (predict_cmd->parsed()) return run_predict(predict_args);
    if (average_cmd->parsed()) return run_average(average_args);
    if (lexicon_cmd->parsed()) return run_lexicon(lexicon_args);
    if (score_cmd->parsed()) return run_score(score_args);
  } catch (const Error& e) {
    std::fprintf(stderr, "heed: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "heed: error: %s\n", e.what());
    return 1;
  }
  return 1;
}
