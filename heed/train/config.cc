// TOML -> G2PConfig with strict keys and types, range checks naming the key, and JSON forms.
#include "heed/train/config.h"

#include <cmath>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "heed/train/checkpoint.h"

namespace heed::train {

namespace {

const char* type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    default: return "a date or time";
  }
}

// Reads the keys of one [section], remembering which were used so that unknown keys
// (typos) are errors rather than silently ignored.
class Section {
 public:
  Section(const toml::table* table, std::string name, std::string source)
      : table_(table), name_(std::move(name)), source_(std::move(source)) {}

  void read(const char* key, int64_t& out) {
    if (const toml::node* n = find(key)) {
      auto v = n->value<int64_t>();
      if (!n->is_integer() || !v) bad_type(key, *n, "an integer");
      out = *v;
    }
  }
  void read(const char* key, uint64_t& out) {
    int64_t v = static_cast<int64_t>(out);
    read(key, v);
    if (v < 0) fail_key(key, "must be >= 0, got ", v);
    out = static_cast<uint64_t>(v);
  }
  void read(const char* key, double& out) {
    if (const toml::node* n = find(key)) {
      if (!n->is_number()) bad_type(key, *n, "a number");
      out = *n->value<double>();
    }
  }
  void read(const char* key, bool& out) {
    if (const toml::node* n = find(key)) {
      if (!n->is_boolean()) bad_type(key, *n, "a boolean (true or false)");
      out = *n->value<bool>();
    }
  }
  void read(const char* key, std::string& out) {
    if (const toml::node* n = find(key)) {
      if (!n->is_string()) bad_type(key, *n, "a string");
      out = *n->value<std::string>();
    }
  }
  template <class E>
  void read_enum(const char* key, E& out, const std::vector<std::pair<const char*, E>>& names) {
    std::string s;
    for (const auto& [n, e] : names)
      if (e == out) s = n;
    read(key, s);
    for (const auto& [n, e] : names)
      if (s == n) {
        out = e;
        return;
      }
    std::string known;
    for (const auto& [n, e] : names) known += std::string(known.empty() ? "" : ", ") + "\"" + n + "\"";
    fail_key(key, "is \"", s, "\", expected one of ", known);
  }
  // As read_enum, for a key whose absence means "not set".
  template <class E>
  void read_enum(const char* key, std::optional<E>& out, const std::vector<std::pair<const char*, E>>& names) {
    if (table_ == nullptr || table_->get(key) == nullptr) {
      find(key);  // known, though absent
      return;
    }
    E e = out.value_or(names.front().second);
    read_enum(key, e, names);
    out = e;
  }

  // Throws for the first key that no read() asked for.
  void finish() const {
    if (table_ == nullptr) return;
    for (const auto& [k, v] : *table_) {
      if (used_.count(std::string(k.str()))) continue;
      std::string known;
      for (const std::string& u : asked_) known += (known.empty() ? "" : ", ") + u;
      fail("config: ", source_, ": unknown key '", name_, ".", k.str(), "' (known keys of [", name_, "]: ", known,
           ")");
    }
  }

  template <class... Args>
  [[noreturn]] void fail_key(const char* key, Args&&... args) const {
    fail("config: ", source_, ": ", name_, ".", key, " ", std::forward<Args>(args)...);
  }

 private:
  const toml::node* find(const char* key) {
    asked_.push_back(key);
    if (table_ == nullptr) return nullptr;
    const toml::node* n = table_->get(key);
    if (n != nullptr) used_.insert(key);
    return n;
  }
  [[noreturn]] void bad_type(const char* key, const toml::node& n, const char* expected) const {
    fail_key(key, "must be ", expected, ", got ", type_name(n.type()));
  }

  const toml::table* table_;
  std::string name_, source_;
  std::set<std::string> used_;
  std::vector<std::string> asked_;
};

const std::vector<std::pair<const char*, kernels::cpu::MatmulPrecision>> kPrecisions = {
    {"f32", kernels::cpu::MatmulPrecision::kF32}, {"bf16", kernels::cpu::MatmulPrecision::kBf16}};

const std::vector<std::pair<const char*, nn::Activation>> kActivations = {{"relu", nn::Activation::kRelu},
                                                                          {"gelu", nn::Activation::kGelu}};
const std::vector<std::pair<const char*, nn::PositionKind>> kPositions = {
    {"sinusoidal", nn::PositionKind::kSinusoidal}, {"learned", nn::PositionKind::kLearned},
    {"rotary", nn::PositionKind::kRotary}, {"none", nn::PositionKind::kNone}};
const std::vector<std::pair<const char*, models::TieEmbeddings>> kTies = {{"none", models::TieEmbeddings::kNone},
                                                                          {"decoder", models::TieEmbeddings::kDecoder},
                                                                          {"all", models::TieEmbeddings::kAll}};
const std::vector<std::pair<const char*, OptimizerKind>> kOptimizers = {
    {"adam", OptimizerKind::kAdam}, {"adamw", OptimizerKind::kAdamW}, {"sgd", OptimizerKind::kSgd}};
const std::vector<std::pair<const char*, ScheduleKind>> kSchedules = {{"inverse_sqrt", ScheduleKind::kInverseSqrt},
                                                                      {"cosine", ScheduleKind::kCosine},
                                                                      {"constant", ScheduleKind::kConstant}};
const std::vector<std::pair<const char*, data::Pronunciations>> kPronunciations = {
    {"all", data::Pronunciations::kAll}, {"first", data::Pronunciations::kFirst}};

template <class E>
std::string enum_name(E value, const std::vector<std::pair<const char*, E>>& names) {
  for (const auto& [n, e] : names)
    if (e == value) return n;
  return "?";
}

void read_model(Section& s, models::TransformerSeq2SeqOptions& m) {
  s.read("d_model", m.d_model);
  s.read("heads", m.heads);
  s.read("encoder_layers", m.encoder_layers);
  s.read("decoder_layers", m.decoder_layers);
  s.read("ff_width", m.ff_width);
  s.read("dropout", m.dropout);
  s.read("attention_dropout", m.attention_dropout);
  s.read("activation_dropout", m.activation_dropout);
  s.read_enum("activation", m.activation, kActivations);
  s.read("norm_first", m.norm_first);
  s.read_enum("positions", m.positions, kPositions);
  s.read("max_len", m.max_len);
  s.read_enum("tie", m.tie, kTies);
  s.read("scale_embeddings", m.scale_embeddings);
  s.read("layer_norm_eps", m.layer_norm_eps);
  s.read("seed", m.seed);
  s.read("reverse_target", m.reverse_target);
}

void check_model(const Section& s, const models::TransformerSeq2SeqOptions& m) {
  if (m.d_model <= 0) s.fail_key("d_model", "must be positive, got ", m.d_model);
  if (m.heads <= 0 || m.d_model % m.heads != 0)
    s.fail_key("heads", "must be positive and divide d_model = ", m.d_model, ", got ", m.heads);
  if (m.positions == nn::PositionKind::kRotary && (m.d_model / m.heads) % 2 != 0)
    s.fail_key("positions", "= \"rotary\" needs an even head size d_model / heads, got ", m.d_model / m.heads);
  if (m.encoder_layers < 0) s.fail_key("encoder_layers", "must be >= 0, got ", m.encoder_layers);
  if (m.decoder_layers <= 0) s.fail_key("decoder_layers", "must be positive, got ", m.decoder_layers);
  if (m.ff_width <= 0) s.fail_key("ff_width", "must be positive, got ", m.ff_width);
  if (m.max_len <= 0) s.fail_key("max_len", "must be positive, got ", m.max_len);
  if (m.layer_norm_eps <= 0) s.fail_key("layer_norm_eps", "must be positive, got ", m.layer_norm_eps);
  for (auto [key, p] : {std::pair{"dropout", m.dropout}, std::pair{"attention_dropout", m.attention_dropout},
                        std::pair{"activation_dropout", m.activation_dropout}})
    if (!(p >= 0 && p < 1)) s.fail_key(key, "must be in [0, 1), got ", p);
}

}  // namespace

namespace {

G2PConfig config_from_table(const toml::table& root, const std::string& source) {
  G2PConfig c;
  auto section = [&](const char* name) {
    const toml::node* n = root.get(name);
    if (n != nullptr && !n->is_table())
      fail("config: ", source, ": '", name, "' must be a [", name, "] table, got ", type_name(n->type()));
    return Section(n != nullptr ? n->as_table() : nullptr, name, source);
  };
  const std::set<std::string> sections = {"data", "model", "optimizer", "schedule", "train", "decode"};
  for (const auto& [k, v] : root)
    if (!sections.count(std::string(k.str())))
      fail("config: ", source, ": unknown key '", k.str(),
           "' (expected the tables [data], [model], [optimizer], [schedule], [train], [decode])");

  Section data = section("data");
  data.read("cmudict", c.data.cmudict);
  data.read_enum("pronunciations", c.data.pronunciations, kPronunciations);
  data.read("max_train_words", c.data.max_train_words);
  data.read("max_valid_words", c.data.max_valid_words);
  data.finish();
  if (c.data.max_train_words < 0) data.fail_key("max_train_words", "must be >= 0, got ", c.data.max_train_words);
  if (c.data.max_valid_words < 0) data.fail_key("max_valid_words", "must be >= 0, got ", c.data.max_valid_words);

  Section model = section("model");
  read_model(model, c.model);
  model.finish();
  check_model(model, c.model);

  Section opt = section("optimizer");
  OptimConfig& o = c.optim;
  opt.read_enum("name", o.kind, kOptimizers);
  opt.read("lr", o.schedule.peak_lr);
  opt.read("beta1", o.beta1);
  opt.read("beta2", o.beta2);
  opt.read("eps", o.eps);
  opt.read("weight_decay", o.weight_decay);
  opt.read("momentum", o.momentum);
  opt.read("clip_norm", o.clip_norm);
  opt.read("label_smoothing", o.label_smoothing);
  opt.finish();
  if (!(o.schedule.peak_lr > 0)) opt.fail_key("lr", "must be positive, got ", o.schedule.peak_lr);
  if (!(o.beta1 >= 0 && o.beta1 < 1)) opt.fail_key("beta1", "must be in [0, 1), got ", o.beta1);
  if (!(o.beta2 >= 0 && o.beta2 < 1)) opt.fail_key("beta2", "must be in [0, 1), got ", o.beta2);
  if (!(o.eps >= 0)) opt.fail_key("eps", "must be >= 0, got ", o.eps);
  if (!(o.weight_decay >= 0)) opt.fail_key("weight_decay", "must be >= 0, got ", o.weight_decay);
  if (!(o.momentum >= 0)) opt.fail_key("momentum", "must be >= 0, got ", o.momentum);
  if (!(o.clip_norm >= 0)) opt.fail_key("clip_norm", "must be >= 0 (0: no clipping), got ", o.clip_norm);
  if (!(o.label_smoothing >= 0 && o.label_smoothing < 1))
    opt.fail_key("label_smoothing", "must be in [0, 1), got ", o.label_smoothing);

  Section sched = section("schedule");
  sched.read_enum("kind", o.schedule.kind, kSchedules);
  sched.read("warmup_steps", o.schedule.warmup_steps);
  sched.read("warmup_init_lr", o.schedule.warmup_init_lr);
  sched.read("total_steps", o.schedule.total_steps);
  sched.read("min_lr", o.schedule.min_lr);
  sched.finish();
  if (o.schedule.warmup_steps < 0) sched.fail_key("warmup_steps", "must be >= 0, got ", o.schedule.warmup_steps);
  if (!(o.schedule.warmup_init_lr >= 0))
    sched.fail_key("warmup_init_lr", "must be >= 0, got ", o.schedule.warmup_init_lr);
  if (o.schedule.kind == ScheduleKind::kCosine && o.schedule.total_steps <= o.schedule.warmup_steps)
    sched.fail_key("total_steps", "must exceed warmup_steps = ", o.schedule.warmup_steps, " for kind = \"cosine\", got ",
                   o.schedule.total_steps);

  Section loop = section("train");
  LoopConfig& l = c.loop;
  loop.read("run_dir", l.run_dir);
  loop.read("seed", l.seed);
  loop.read("batch_size", l.batch_size);
  loop.read("max_tokens", l.max_tokens);
  loop.read("max_epochs", l.max_epochs);
  loop.read("max_steps", l.max_steps);
  loop.read("time_limit_minutes", l.time_limit_minutes);
  loop.read("patience", l.patience);
  loop.read("log_every", l.log_every);
  loop.read("checkpoint_every", l.checkpoint_every);
  loop.read("keep_epochs", l.keep_epochs);
  loop.read("threads", l.threads);
  loop.read("validate_at_stop", l.validate_at_stop);
  loop.read_enum("matmul_precision", l.matmul_precision, kPrecisions);
  loop.finish();
  if (l.run_dir.empty()) loop.fail_key("run_dir", "must not be empty");
  if (l.batch_size <= 0) loop.fail_key("batch_size", "must be positive, got ", l.batch_size);
  if (l.max_tokens < 0) loop.fail_key("max_tokens", "must be >= 0, got ", l.max_tokens);
  if (l.max_epochs <= 0) loop.fail_key("max_epochs", "must be positive, got ", l.max_epochs);
  if (l.max_steps < 0) loop.fail_key("max_steps", "must be >= 0, got ", l.max_steps);
  if (!(l.time_limit_minutes >= 0)) loop.fail_key("time_limit_minutes", "must be >= 0, got ", l.time_limit_minutes);
  if (l.patience < 0) loop.fail_key("patience", "must be >= 0, got ", l.patience);
  if (l.log_every <= 0) loop.fail_key("log_every", "must be positive, got ", l.log_every);
  if (l.checkpoint_every < 0) loop.fail_key("checkpoint_every", "must be >= 0, got ", l.checkpoint_every);
  if (l.keep_epochs < 0) loop.fail_key("keep_epochs", "must be >= 0, got ", l.keep_epochs);
  if (l.threads < 0) loop.fail_key("threads", "must be >= 0, got ", l.threads);
  c.model.seed = c.model.seed == 0 ? l.seed : c.model.seed;

  Section dec = section("decode");
  DecodeConfig& d = c.decode;
  dec.read("beam_size", d.beam_size);
  dec.read("alpha", d.alpha);
  dec.read("nbest", d.nbest);
  dec.read("max_len", d.max_len);
  dec.read("batch_size", d.batch_size);
  dec.read("valid_beam_size", d.valid_beam_size);
  dec.finish();
  if (d.beam_size <= 0) dec.fail_key("beam_size", "must be positive, got ", d.beam_size);
  if (!(d.alpha >= 0)) dec.fail_key("alpha", "must be >= 0, got ", d.alpha);
  if (d.nbest <= 0 || d.nbest > d.beam_size)
    dec.fail_key("nbest", "must be in [1, beam_size = ", d.beam_size, "], got ", d.nbest);
  if (d.max_len <= 0) dec.fail_key("max_len", "must be positive, got ", d.max_len);
  if (d.max_len > c.model.max_len && c.model.positions != nn::PositionKind::kRotary &&
      c.model.positions != nn::PositionKind::kNone)
    dec.fail_key("max_len", "= ", d.max_len, " exceeds model.max_len = ", c.model.max_len);
  if (d.batch_size <= 0) dec.fail_key("batch_size", "must be positive, got ", d.batch_size);
  if (d.valid_beam_size <= 0) dec.fail_key("valid_beam_size", "must be positive, got ", d.valid_beam_size);
  return c;
}

// JSON -> TOML table, so a config stored as JSON goes through the same checks.
toml::table json_to_table(const nlohmann::json& j);

void json_to_node(const nlohmann::json& v, toml::table& into, const std::string& key) {
  if (v.is_object()) into.insert(key, json_to_table(v));
  else if (v.is_boolean()) into.insert(key, v.get<bool>());
  else if (v.is_number_integer()) into.insert(key, v.get<int64_t>());
  else if (v.is_number()) into.insert(key, v.get<double>());
  else if (v.is_string()) into.insert(key, v.get<std::string>());
  else fail("config: JSON value of '", key, "' has no TOML equivalent (", v.dump(), ")");
}

toml::table json_to_table(const nlohmann::json& j) {
  toml::table t;
  for (const auto& [k, v] : j.items()) json_to_node(v, t, k);
  return t;
}

}  // namespace

G2PConfig parse_g2p_config(std::string_view text, std::string_view source_view) {
  const std::string source(source_view);
  toml::table root;
  try {
    root = toml::parse(text, source_view);
  } catch (const toml::parse_error& e) {
    fail("config: ", source, ":", e.source().begin.line, ":", e.source().begin.column, ": ", e.description());
  }
  return config_from_table(root, source);
}

G2PConfig g2p_config_from_json(std::string_view text, std::string_view source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("config: ", source, ": not valid JSON (", e.what(), ")");
  }
  HEED_CHECK(j.is_object(), "config: ", source, ": expected a JSON object");
  return config_from_table(json_to_table(j), std::string(source));
}

G2PConfig load_g2p_config(const std::string& path) {
  std::string text;
  try {
    text = read_text_file(path);
  } catch (const Error&) {
    fail("config: cannot read ", path);
  }
  return parse_g2p_config(text, path);
}

namespace {

// with_vocab: also the vocabulary sizes and pad id (a model config, not a [model] table).
nlohmann::json model_json(const models::TransformerSeq2SeqOptions& m, bool with_vocab) {
  nlohmann::json j{{"d_model", m.d_model},
                        {"heads", m.heads},
                        {"encoder_layers", m.encoder_layers},
                        {"decoder_layers", m.decoder_layers},
                        {"ff_width", m.ff_width},
                        {"dropout", m.dropout},
                        {"attention_dropout", m.attention_dropout},
                        {"activation_dropout", m.activation_dropout},
                        {"activation", enum_name(m.activation, kActivations)},
                        {"norm_first", m.norm_first},
                        {"positions", enum_name(m.positions, kPositions)},
                        {"max_len", m.max_len},
                        {"tie", enum_name(m.tie, kTies)},
                        {"scale_embeddings", m.scale_embeddings},
                        {"layer_norm_eps", m.layer_norm_eps},
                        {"seed", m.seed},
                        {"reverse_target", m.reverse_target}};
  if (with_vocab) {
    j["src_vocab"] = m.src_vocab;
    j["tgt_vocab"] = m.tgt_vocab;
    j["pad_id"] = m.pad_id;
  }
  return j;
}

}  // namespace

std::string model_config_to_json(const models::TransformerSeq2SeqOptions& m) { return model_json(m, true).dump(2); }

models::TransformerSeq2SeqOptions model_config_from_json(std::string_view text, std::string_view source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("model config: ", source, ": not valid JSON (", e.what(), ")");
  }
  HEED_CHECK(j.is_object(), "model config: ", source, ": expected a JSON object");
  models::TransformerSeq2SeqOptions m;
  auto get = [&](const char* key, auto& out) {
    HEED_CHECK(j.contains(key), "model config: ", source, ": missing key '", key, "'");
    try {
      out = j.at(key).get<std::remove_reference_t<decltype(out)>>();
    } catch (const nlohmann::json::exception&) {
      fail("model config: ", source, ": key '", key, "' has the wrong type (", j.at(key).dump(), ")");
    }
  };
  auto get_enum = [&](const char* key, auto& out, const auto& names) {
    std::string s;
    get(key, s);
    for (const auto& [n, e] : names)
      if (s == n) {
        out = e;
        return;
      }
    fail("model config: ", source, ": key '", key, "' has an unknown value \"", s, "\"");
  };
  get("src_vocab", m.src_vocab);
  get("tgt_vocab", m.tgt_vocab);
  get("d_model", m.d_model);
  get("heads", m.heads);
  get("encoder_layers", m.encoder_layers);
  get("decoder_layers", m.decoder_layers);
  get("ff_width", m.ff_width);
  get("dropout", m.dropout);
  get("attention_dropout", m.attention_dropout);
  get("activation_dropout", m.activation_dropout);
  get_enum("activation", m.activation, kActivations);
  get("norm_first", m.norm_first);
  get_enum("positions", m.positions, kPositions);
  get("max_len", m.max_len);
  get_enum("tie", m.tie, kTies);
  get("scale_embeddings", m.scale_embeddings);
  get("pad_id", m.pad_id);
  get("layer_norm_eps", m.layer_norm_eps);
  get("seed", m.seed);
  if (j.contains("reverse_target")) get("reverse_target", m.reverse_target);  // absent before session 11
  return m;
}

std::string g2p_config_to_json(const G2PConfig& c) {
  const OptimConfig& o = c.optim;
  nlohmann::json j{
      {"data",
       {{"cmudict", c.data.cmudict},
        {"pronunciations", enum_name(c.data.pronunciations, kPronunciations)},
        {"max_train_words", c.data.max_train_words},
        {"max_valid_words", c.data.max_valid_words}}},
      {"model", model_json(c.model, false)},
      {"optimizer",
       {{"name", enum_name(o.kind, kOptimizers)},
        {"lr", o.schedule.peak_lr},
        {"beta1", o.beta1},
        {"beta2", o.beta2},
        {"eps", o.eps},
        {"weight_decay", o.weight_decay},
        {"momentum", o.momentum},
        {"clip_norm", o.clip_norm},
        {"label_smoothing", o.label_smoothing}}},
      {"schedule",
       {{"kind", enum_name(o.schedule.kind, kSchedules)},
        {"warmup_steps", o.schedule.warmup_steps},
        {"warmup_init_lr", o.schedule.warmup_init_lr},
        {"total_steps", o.schedule.total_steps},
        {"min_lr", o.schedule.min_lr}}},
      {"train",
       {{"run_dir", c.loop.run_dir},
        {"seed", c.loop.seed},
        {"batch_size", c.loop.batch_size},
        {"max_tokens", c.loop.max_tokens},
        {"max_epochs", c.loop.max_epochs},
        {"max_steps", c.loop.max_steps},
        {"time_limit_minutes", c.loop.time_limit_minutes},
        {"patience", c.loop.patience},
        {"log_every", c.loop.log_every},
        {"checkpoint_every", c.loop.checkpoint_every},
        {"keep_epochs", c.loop.keep_epochs},
        {"threads", c.loop.threads},
        {"validate_at_stop", c.loop.validate_at_stop}}},
      {"decode",
       {{"beam_size", c.decode.beam_size},
        {"alpha", c.decode.alpha},
        {"nbest", c.decode.nbest},
        {"max_len", c.decode.max_len},
        {"batch_size", c.decode.batch_size},
        {"valid_beam_size", c.decode.valid_beam_size}}}};
  if (c.loop.matmul_precision) j["train"]["matmul_precision"] = enum_name(*c.loop.matmul_precision, kPrecisions);
  return j.dump(2);
}

std::unique_ptr<Optimizer> make_optimizer(const OptimConfig& c, NamedTensors params) {
  const double lr = Schedule(c.schedule).lr(1);
  switch (c.kind) {
    case OptimizerKind::kSgd:
      return std::make_unique<Sgd>(std::move(params),
                                   SgdOptions{.lr = lr, .momentum = c.momentum, .weight_decay = c.weight_decay});
    case OptimizerKind::kAdam:
    case OptimizerKind::kAdamW:
      return std::make_unique<Adam>(std::move(params),
                                    AdamOptions{.lr = lr, .beta1 = c.beta1, .beta2 = c.beta2, .eps = c.eps,
                                                .weight_decay = c.weight_decay,
                                                .decoupled_weight_decay = c.kind == OptimizerKind::kAdamW});
  }
  fail("make_optimizer: unknown optimizer kind");
}

}  // namespace heed::train
