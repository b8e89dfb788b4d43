// G2P data loading, batched word decoding and WER/PER evaluation.
#include "heed/train/g2p.h"

#include <algorithm>
#include <cmath>
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
#include "heed/ops/shape.h"
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

void reverse_targets(std::span<data::Example> examples) {
  for (data::Example& e : examples) std::reverse(e.tgt.begin(), e.tgt.end());
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

// Both reading directions: each direction's ensemble proposes candidates, every model scores
// every candidate, the best mean log-probability (length-normalised) wins.
std::vector<std::vector<PhonemePrediction>> predict_bidirectional(Models models,
                                                                  std::span<const std::vector<int64_t>> sources,
                                                                  const G2PDecodeOptions& o,
                                                                  const std::function<void(int64_t)>& on_batch) {
  std::vector<const models::TransformerSeq2Seq*> l2r, r2l;
  for (const models::TransformerSeq2Seq* m : models) {
    (m->options().reverse_target ? r2l : l2r).push_back(m);
    // Scoring a proposal of max_len phonemes feeds BOS + max_len tokens.
    HEED_CHECK(m->options().takes_length(o.max_len + 1), "predict: scoring proposals of up to ", o.max_len,
               " phonemes by both reading directions needs models with max_len >= ", o.max_len + 1, ", one has ",
               m->options().max_len, " (lower the decoding max_len)");
  }
  G2PDecodeOptions proposals = o;
  proposals.nbest = std::max(o.nbest, o.beam_size);
  const int64_t n = static_cast<int64_t>(sources.size());
  // Progress in words: each direction's decoding counts as a third of the work, scoring as one.
  auto progress = [&on_batch](int64_t offset) {
    return [&on_batch, offset](int64_t done) {
      if (on_batch) on_batch(offset + done / 3);
    };
  };
  std::vector<std::vector<PhonemePrediction>> a = predict_ids(l2r, sources, proposals, progress(0));
  std::vector<std::vector<PhonemePrediction>> b = predict_ids(r2l, sources, proposals, progress(n / 3));
  std::vector<int64_t> word;                   // candidate k is for sources[word[k]]
  std::vector<std::vector<int64_t>> candidates;
  std::vector<bool> finished;                  // as its first proposer's search ended it
  std::vector<int64_t> first(n + 1, 0);        // candidates of word i: [first[i], first[i + 1])
  for (int64_t i = 0; i < n; ++i) {
    first[i] = static_cast<int64_t>(candidates.size());
    for (const auto* list : {&a[i], &b[i]})
      for (const PhonemePrediction& p : *list)
        if (std::find(candidates.begin() + first[i], candidates.end(), p.ids) == candidates.end()) {
          word.push_back(i);
          candidates.push_back(p.ids);
          finished.push_back(p.finished);
        }
  }
  first[n] = static_cast<int64_t>(candidates.size());
  std::vector<double> mean(candidates.size(), 0.0);
  for (const models::TransformerSeq2Seq* m : models) {
    const std::vector<double> lp = target_log_probs(*m, sources, word, candidates, o.batch_size);
    for (size_t k = 0; k < lp.size(); ++k) mean[k] += lp[k] / static_cast<double>(models.size());
  }
  std::vector<std::vector<PhonemePrediction>> out(n);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = first[i]; k < first[i + 1]; ++k)
      out[i].push_back(PhonemePrediction{
          .ids = candidates[k],
          .score = decode::length_normalised(mean[k], candidates[k].size() + 1, o.alpha),
          .log_prob = mean[k],  // EOS included: every proposal is scored as a whole pronunciation
          .finished = finished[k]});
    std::stable_sort(out[i].begin(), out[i].end(),
                     [](const PhonemePrediction& x, const PhonemePrediction& y) { return x.score > y.score; });
    if (static_cast<int64_t>(out[i].size()) > o.nbest) out[i].resize(static_cast<size_t>(o.nbest));
  }
  if (on_batch) on_batch(n);
  return out;
}

}  // namespace

std::vector<double> target_log_probs(const models::TransformerSeq2Seq& model,
                                     std::span<const std::vector<int64_t>> sources, std::span<const int64_t> word,
                                     std::span<const std::vector<int64_t>> candidates, int64_t batch_size) {
  HEED_CHECK(word.size() == candidates.size(), "target_log_probs: ", word.size(), " word indices for ",
             candidates.size(), " candidates");
  HEED_CHECK(batch_size > 0, "target_log_probs: batch_size must be positive, got ", batch_size);
  autograd::NoGradGuard no_grad;
  const bool reversed = model.options().reverse_target;
  std::vector<double> out(candidates.size(), 0.0);
  const int64_t total = static_cast<int64_t>(candidates.size());
  for (int64_t start = 0; start < total; start += batch_size) {
    const int64_t end = std::min(total, start + batch_size), rows = end - start;
    // The distinct words of this chunk, encoded once; row r reads word slot[r]'s memory.
    std::vector<std::vector<int64_t>> words;
    std::unordered_map<int64_t, int64_t> slot_of;
    std::vector<int64_t> slot(static_cast<size_t>(rows));
    int64_t longest = 0;
    for (int64_t k = start; k < end; ++k) {
      const int64_t w = word[k];
      HEED_CHECK(0 <= w && w < static_cast<int64_t>(sources.size()), "target_log_probs: word index ", w,
                 " expected within [0, ", sources.size(), ")");
      auto [it, fresh] = slot_of.emplace(w, static_cast<int64_t>(words.size()));
      if (fresh) words.push_back(sources[w]);
      slot[k - start] = it->second;
      longest = std::max<int64_t>(longest, static_cast<int64_t>(candidates[k].size()));
    }
    EncodedWords enc = encode_words(words);
    Tensor memory = model.encode(enc.src, enc.lengths);  // [W, S, C]
    Tensor index = Tensor::from_vector(slot, {rows});
    const int64_t t = longest + 1;  // BOS + tokens in; tokens + EOS out
    Tensor tgt_in = Tensor::zeros({rows, t}, DType::kI64);  // pad id 0 after each candidate (causal: unread)
    int64_t* in = tgt_in.data<int64_t>();
    std::vector<std::vector<int64_t>> targets(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<int64_t> seq = candidates[start + r];
      if (reversed) std::reverse(seq.begin(), seq.end());
      in[r * t] = data::kBosId;
      std::copy(seq.begin(), seq.end(), in + r * t + 1);
      seq.push_back(data::kEosId);
      targets[r] = std::move(seq);
    }
    Tensor logits = contiguous(
        model.decode(tgt_in, index_select(memory, 0, index), index_select(enc.lengths, 0, index)));  // [rows, t, V]
    HEED_CHECK(logits.dtype() == DType::kF32, "target_log_probs: expected f32 logits, got ", dtype_name(logits.dtype()));
    const int64_t v = logits.size(2);
    const float* lg = logits.data<float>();
    for (int64_t r = 0; r < rows; ++r) {
      double sum = 0;
      for (size_t p = 0; p < targets[r].size(); ++p) {
        const float* row = lg + (r * t + static_cast<int64_t>(p)) * v;
        double mx = row[0];
        for (int64_t j = 1; j < v; ++j) mx = std::max<double>(mx, row[j]);
        double z = 0;
        for (int64_t j = 0; j < v; ++j) z += std::exp(static_cast<double>(row[j]) - mx);
        sum += static_cast<double>(row[targets[r][p]]) - mx - std::log(z);
      }
      out[start + r] = sum;
    }
  }
  return out;
}

std::vector<std::vector<PhonemePrediction>> predict_ids(Models models, std::span<const std::vector<int64_t>> sources,
                                                        const G2PDecodeOptions& o,
                                                        const std::function<void(int64_t)>& on_batch) {
  HEED_CHECK(o.batch_size > 0, "predict: batch_size must be positive, got ", o.batch_size);
  HEED_CHECK(!models.empty(), "predict: no model given");
  bool l2r = false, r2l = false;
  for (const models::TransformerSeq2Seq* m : models) (m->options().reverse_target ? r2l : l2r) = true;
  if (l2r && r2l) return predict_bidirectional(models, sources, o, on_batch);
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
      for (const decode::Hypothesis& h : hyps[i - start]) {
        PhonemePrediction p{.ids = h.tokens, .score = h.score, .log_prob = h.log_prob, .finished = h.finished};
        if (r2l) std::reverse(p.ids.begin(), p.ids.end());  // read back left to right
        out[order[i]].push_back(std::move(p));
      }
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
