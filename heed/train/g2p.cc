// G2P data loading, batched word decoding and WER/PER evaluation.
#include "heed/train/g2p.h"

#include <algorithm>
#include <memory>
#include <numeric>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "heed/autograd/graph.h"
#include "heed/decode/beam.h"
#include "heed/decode/ensemble.h"
#include "heed/decode/greedy.h"
#include "heed/decode/kv_cache.h"
#include "heed/train/checkpoint.h"

#include <nlohmann/json.hpp>

namespace heed::train {

G2PData load_g2p_data(const DataConfig& config) {
  G2PData d;
  d.lexicon = data::load_cmudict(config.cmudict);
  d.split = data::split_lexicon(d.lexicon);
  d.train_entries = d.split.train;
  if (config.max_train_words > 0 && static_cast<int64_t>(d.train_entries.size()) > config.max_train_words)
    d.train_entries.resize(config.max_train_words);
  d.valid_entries = d.split.validation;
  if (config.max_valid_words > 0 && static_cast<int64_t>(d.valid_entries.size()) > config.max_valid_words)
    d.valid_entries.resize(config.max_valid_words);
  d.vocabs = data::build_g2p_vocabs(d.lexicon, d.train_entries);
  d.train = data::make_g2p_examples(d.lexicon, d.train_entries, d.vocabs,
                                    data::G2PExampleOptions{.pronunciations = config.pronunciations, .encode = {}});
  return d;
}

EncodedWords encode_words(std::span<const std::vector<int64_t>> words) {
  const int64_t b = static_cast<int64_t>(words.size());
  int64_t s = 1;
  for (const auto& w : words) s = std::max<int64_t>(s, static_cast<int64_t>(w.size()));
  Tensor src = Tensor::zeros({b, s}, DType::kI64), lengths = Tensor::empty({b}, DType::kI64);  // pad id 0
  int64_t* ps = src.data<int64_t>();
  int64_t* pl = lengths.data<int64_t>();
  for (int64_t i = 0; i < b; ++i) {
    std::copy(words[i].begin(), words[i].end(), ps + i * s);
    pl[i] = static_cast<int64_t>(words[i].size());
  }
  return {src, lengths};
}

G2PDecodeOptions decode_options(const DecodeConfig& c, bool for_validation) {
  G2PDecodeOptions o{.beam_size = c.beam_size, .alpha = c.alpha, .nbest = c.nbest, .max_len = c.max_len,
                     .batch_size = c.batch_size};
  if (for_validation) {
    o.beam_size = c.valid_beam_size;
    o.nbest = 1;
  }
  return o;
}

namespace {

// "the model", or "model 2 of 3" in an ensemble, for error messages.
std::string which_model(size_t index, size_t count) {
  std::ostringstream out;
  if (count == 1) out << "the model";
  else out << "model " << index + 1 << " of " << count;
  return out.str();
}

}  // namespace

std::vector<std::vector<PhonemePrediction>> predict_ids(Models models, std::span<const std::vector<int64_t>> sources,
                                                        const G2PDecodeOptions& o,
                                                        const std::function<void(int64_t)>& on_batch) {
  HEED_CHECK(o.batch_size > 0, "predict: batch_size must be positive, got ", o.batch_size);
  HEED_CHECK(!models.empty(), "predict: no model given");
  autograd::NoGradGuard no_grad;
  const int64_t n = static_cast<int64_t>(sources.size());
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return sources[a].size() < sources[b].size(); });
  std::vector<std::vector<PhonemePrediction>> out(n);
  std::vector<std::unique_ptr<decode::CachedSeq2SeqDecoder>> members;
  std::vector<decode::IncrementalDecoder*> member_ptrs;
  for (const models::TransformerSeq2Seq* m : models) {
    const models::TransformerSeq2SeqOptions& mo = m->options();
    HEED_CHECK(mo.takes_length(o.max_len),
               "predict: decoding up to ", o.max_len, " phonemes needs max_len >= ", o.max_len, ", but ",
               which_model(members.size(), models.size()), " has max_len ", mo.max_len);
    members.push_back(std::make_unique<decode::CachedSeq2SeqDecoder>(*m));
    member_ptrs.push_back(members.back().get());
  }
  decode::EnsembleDecoder decoder(std::move(member_ptrs));
  for (int64_t start = 0; start < n; start += o.batch_size) {
    const int64_t end = std::min(n, start + o.batch_size);
    std::vector<std::vector<int64_t>> batch;
    for (int64_t i = start; i < end; ++i) batch.push_back(sources[order[i]]);
    EncodedWords enc = encode_words(batch);
    std::vector<std::vector<decode::Hypothesis>> hyps;
    if (o.beam_size == 1) {
      for (decode::Hypothesis& h : decode::greedy_decode(
               decoder, enc.src, enc.lengths,
               {.bos_id = data::kBosId, .eos_id = data::kEosId, .max_len = o.max_len}))
        hyps.push_back({std::move(h)});
    } else {
      hyps = decode::beam_search(decoder, enc.src, enc.lengths,
                                 {.beam_size = o.beam_size, .alpha = o.alpha, .nbest = o.nbest,
                                  .bos_id = data::kBosId, .eos_id = data::kEosId, .max_len = o.max_len});
    }
    for (int64_t i = start; i < end; ++i)
      for (const decode::Hypothesis& h : hyps[i - start])
        out[order[i]].push_back(PhonemePrediction{.ids = h.tokens, .score = h.score, .log_prob = h.log_prob});
    if (on_batch) on_batch(end);
  }
  return out;
}

std::vector<WordPrediction> predict_words(Models models, const data::G2PVocabs& vocabs,
                                          std::span<const std::string> words, const G2PDecodeOptions& options) {
  std::vector<std::vector<int64_t>> sources;
  for (const std::string& w : words) {
    HEED_CHECK(!w.empty(), "predict: empty word");
    std::vector<int64_t> ids = data::encode_chars(vocabs.chars, data::normalize_g2p_word(w));
    for (size_t i = 0; i < models.size(); ++i) {
      const models::TransformerSeq2SeqOptions& mo = models[i]->options();
      HEED_CHECK(mo.takes_length(static_cast<int64_t>(ids.size())),
                 "predict: word '", w, "' has ", ids.size(), " characters, ", which_model(i, models.size()),
                 " takes at most ", mo.max_len);
    }
    sources.push_back(std::move(ids));
  }
  std::vector<std::vector<PhonemePrediction>> preds = predict_ids(models, sources, options);
  std::vector<WordPrediction> out;
  for (size_t i = 0; i < words.size(); ++i) {
    WordPrediction wp{.word = words[i], .phonemes = {}, .scores = {}};
    for (const PhonemePrediction& p : preds[i]) {
      wp.phonemes.push_back(data::decode_tokens(vocabs.phonemes, p.ids));
      wp.scores.push_back(p.score);
    }
    out.push_back(std::move(wp));
  }
  return out;
}

SequenceErrorRates evaluate_g2p(Models models, const data::Lexicon& lexicon, std::span<const int64_t> entries,
                                const data::G2PVocabs& vocabs, const G2PDecodeOptions& options,
                                const std::function<void(int64_t)>& on_batch) {
  const data::EncodeOptions lenient{.unknown = data::UnknownToken::kUseUnk};
  std::vector<std::vector<int64_t>> sources;
  for (int64_t e : entries) sources.push_back(data::encode_chars(vocabs.chars, lexicon.entries[e].word, lenient));
  G2PDecodeOptions o = options;
  o.nbest = 1;
  std::vector<std::vector<PhonemePrediction>> preds = predict_ids(models, sources, o, on_batch);
  SequenceErrorRates rates;
  for (size_t i = 0; i < entries.size(); ++i) {
    std::vector<std::vector<int64_t>> refs;
    for (const auto& pron : lexicon.entries[entries[i]].pronunciations)
      refs.push_back(data::encode_tokens(vocabs.phonemes, pron, lenient));
    const std::vector<int64_t> empty;
    const std::vector<int64_t>& hyp = preds[i].empty() ? empty : preds[i].front().ids;
    rates.add(score_word(hyp, refs));
  }
  return rates;
}

SequenceErrorRates score_g2p_hypotheses(const data::Lexicon& lexicon, std::span<const int64_t> entries,
                                        const data::Lexicon& hypotheses, const std::string& source_name) {
  std::unordered_map<std::string_view, const std::vector<std::string>*> best;
  for (const data::LexiconEntry& h : hypotheses.entries) best.emplace(h.word, &h.pronunciations.front());
  SequenceErrorRates rates;
  int64_t missing = 0;
  std::string first_missing;
  for (int64_t e : entries) {
    const data::LexiconEntry& entry = lexicon.entries[e];
    auto it = best.find(entry.word);
    if (it == best.end()) {
      if (missing++ == 0) first_missing = entry.word;
      continue;
    }
    rates.add(score_word(*it->second, entry.pronunciations));
  }
  HEED_CHECK(missing == 0, source_name, " has no pronunciation for '", first_missing, "' (", missing, " of ",
             entries.size(), " words missing); expected one `word PH PH ...` line for every word scored");
  return rates;
}

models::TransformerSeq2SeqOptions g2p_model_options(const G2PConfig& config, const data::G2PVocabs& vocabs) {
  models::TransformerSeq2SeqOptions m = config.model;
  m.src_vocab = vocabs.chars.size();
  m.tgt_vocab = vocabs.phonemes.size();
  m.pad_id = data::kPadId;
  return m;
}

std::string g2p_checkpoint_json(const G2PConfig& config, const data::G2PVocabs& vocabs) {
  nlohmann::json j{{"format", "heed.g2p"},
                   {"version", 1},
                   {"model", nlohmann::json::parse(model_config_to_json(g2p_model_options(config, vocabs)))},
                   {"vocabs",
                    {{"chars", nlohmann::json::parse(vocabs.chars.to_json())},
                     {"phonemes", nlohmann::json::parse(vocabs.phonemes.to_json())}}},
                   {"config", nlohmann::json::parse(g2p_config_to_json(config))}};
  return j.dump(2);
}

G2PModel load_g2p_model(const std::filesystem::path& dir) {
  const CheckpointPaths paths{dir};
  HEED_CHECK(std::filesystem::is_directory(dir), "load model: ", dir.string(), " is not a checkpoint directory");
  const std::string source = paths.config().string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(paths.config()));
  } catch (const nlohmann::json::exception& e) {
    fail("load model: ", source, ": not valid JSON (", e.what(), ")");
  }
  HEED_CHECK(j.is_object() && j.value("format", "") == "heed.g2p", "load model: ", source,
             " is not a heed G2P checkpoint config");
  HEED_CHECK(j.contains("model") && j.contains("vocabs") && j.contains("config") && j["vocabs"].contains("chars") &&
                 j["vocabs"].contains("phonemes"),
             "load model: ", source, ": missing 'model', 'vocabs' or 'config'");
  G2PModel out;
  out.vocabs.chars = data::Vocab::from_json(j["vocabs"]["chars"].dump());
  out.vocabs.phonemes = data::Vocab::from_json(j["vocabs"]["phonemes"].dump());
  out.config = g2p_config_from_json(j["config"].dump(), source);
  models::TransformerSeq2SeqOptions m = model_config_from_json(j["model"].dump(), source);
  HEED_CHECK(m.src_vocab == out.vocabs.chars.size() && m.tgt_vocab == out.vocabs.phonemes.size(), "load model: ",
             source, ": vocabulary sizes ", m.src_vocab, "/", m.tgt_vocab, " do not match the stored vocabularies ",
             out.vocabs.chars.size(), "/", out.vocabs.phonemes.size());
  out.model = std::make_unique<models::TransformerSeq2Seq>(m);
  load_module(paths.model(), *out.model);
  out.model->eval();
  return out;
}

}  // namespace heed::train
