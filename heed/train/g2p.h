// The grapheme-to-phoneme task glue: loading CMUdict into split examples and vocabularies,
// decoding words with a trained TransformerSeq2Seq, and scoring them (WER/PER against every
// reference pronunciation).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "heed/data/cmudict.h"
#include "heed/data/g2p.h"
#include "heed/models/transformer_seq2seq.h"
#include "heed/train/config.h"
#include "heed/train/metrics.h"

namespace heed::train {

struct G2PData {
  data::Lexicon lexicon;
  data::LexiconSplit split;
  data::G2PVocabs vocabs;
  std::vector<int64_t> train_entries;  // split.train, truncated to max_train_words
  std::vector<int64_t> valid_entries;  // split.validation, truncated to max_valid_words
  std::vector<data::Example> train;    // training pairs (per config.pronunciations)
};

// Reads config.cmudict, splits it, builds vocabularies from the training words.
G2PData load_g2p_data(const DataConfig& config);

// Reverses every example's target in place: the training data of a model with
// reverse_target (its phonemes read right to left).
void reverse_targets(std::span<data::Example> examples);

// Inputs [B, S] and lengths [B] for a batch of encoded words.
struct EncodedWords {
  Tensor src;
  Tensor lengths;
};
EncodedWords encode_words(std::span<const std::vector<int64_t>> words);

struct G2PDecodeOptions {
  int64_t beam_size = 5;  // 1: greedy
  double alpha = 1.0;
  int64_t nbest = 1;
  int64_t max_len = 48;
  int64_t batch_size = 256;
};

G2PDecodeOptions decode_options(const DecodeConfig& config, bool for_validation = false);

// One pronunciation hypothesis of a word.
struct PhonemePrediction {
  std::vector<int64_t> ids;  // phoneme ids, no specials
  double score = 0;          // the decoder's ranking score (log-probability, length-normalised by beam)
  double log_prob = 0;
  bool finished = true;  // ended with EOS (false: stopped at max_len, log_prob without EOS)
};

// The models a prediction decodes with: one, or an ensemble whose next-token distribution
// is the mean of its members' (decode::EnsembleDecoder). All must share the vocabularies.
using Models = std::span<const models::TransformerSeq2Seq* const>;

// n-best predictions for each source (character ids), in order, phonemes left to right
// whatever the models' reverse_target. Words are decoded in batches sorted by length.
// `on_batch(words_done)` is called after each batch when given. Models of one reading
// direction decode as one ensemble; when both directions are given, each direction's
// ensemble proposes its beam_size best, and every proposal is scored by every model
// (target_log_probs); the best mean log-probability, length-normalised as the beam search
// does, wins (agreement of left-to-right and right-to-left models, Liu et al. 2016).
std::vector<std::vector<PhonemePrediction>> predict_ids(Models models, std::span<const std::vector<int64_t>> sources,
                                                        const G2PDecodeOptions& options,
                                                        const std::function<void(int64_t)>& on_batch = {});
inline std::vector<std::vector<PhonemePrediction>> predict_ids(const models::TransformerSeq2Seq& model,
                                                               std::span<const std::vector<int64_t>> sources,
                                                               const G2PDecodeOptions& options,
                                                               const std::function<void(int64_t)>& on_batch = {}) {
  const models::TransformerSeq2Seq* one[] = {&model};
  return predict_ids(one, sources, options, on_batch);
}

// log p(candidates[k] | sources[word[k]]) under `model` by teacher forcing, candidates in
// reading order (left to right; a reverse_target model is fed them reversed), EOS included.
std::vector<double> target_log_probs(const models::TransformerSeq2Seq& model,
                                     std::span<const std::vector<int64_t>> sources, std::span<const int64_t> word,
                                     std::span<const std::vector<int64_t>> candidates, int64_t batch_size = 256);

// Words (any case) -> n-best phoneme strings. A character the model's vocabulary lacks is a
// heed::Error naming it and the word.
struct WordPrediction {
  std::string word;
  std::vector<std::vector<std::string>> phonemes;  // n-best, best first
  std::vector<double> scores;
};
std::vector<WordPrediction> predict_words(Models models, const data::G2PVocabs& vocabs,
                                          std::span<const std::string> words, const G2PDecodeOptions& options);
inline std::vector<WordPrediction> predict_words(const models::TransformerSeq2Seq& model, const data::G2PVocabs& vocabs,
                                                 std::span<const std::string> words,
                                                 const G2PDecodeOptions& options) {
  const models::TransformerSeq2Seq* one[] = {&model};
  return predict_words(one, vocabs, words, options);
}

// WER/PER of the model's best hypothesis for lexicon entries `entries` (every pronunciation
// of a word is a reference).
SequenceErrorRates evaluate_g2p(Models models, const data::Lexicon& lexicon, std::span<const int64_t> entries,
                                const data::G2PVocabs& vocabs, const G2PDecodeOptions& options,
                                const std::function<void(int64_t)>& on_batch = {});
inline SequenceErrorRates evaluate_g2p(const models::TransformerSeq2Seq& model, const data::Lexicon& lexicon,
                                       std::span<const int64_t> entries, const data::G2PVocabs& vocabs,
                                       const G2PDecodeOptions& options,
                                       const std::function<void(int64_t)>& on_batch = {}) {
  const models::TransformerSeq2Seq* one[] = {&model};
  return evaluate_g2p(one, lexicon, entries, vocabs, options, on_batch);
}

// WER/PER of pronunciations produced elsewhere (another G2P system's output, read with
// data::load_cmudict so its first pronunciation of a word is its best) against the
// references of lexicon entries `entries`. A word of `entries` that `hypotheses` lacks is a
// heed::Error naming it and how many are missing; words outside `entries` are ignored.
SequenceErrorRates score_g2p_hypotheses(const data::Lexicon& lexicon, std::span<const int64_t> entries,
                                        const data::Lexicon& hypotheses, const std::string& source_name);

// A trained G2P model as stored in a checkpoint directory: config.json holds the model
// config, both vocabularies and the run's config; model.safetensors the weights.
struct G2PModel {
  std::unique_ptr<models::TransformerSeq2Seq> model;  // in eval mode
  data::G2PVocabs vocabs;
  G2PConfig config;  // the run's config (data path, decoding defaults)
};

// config.json content for a run with this config and these vocabularies.
std::string g2p_checkpoint_json(const G2PConfig& config, const data::G2PVocabs& vocabs);
// Reads config.json and model.safetensors of `dir`; throws heed::Error naming what is wrong.
G2PModel load_g2p_model(const std::filesystem::path& dir);

// The model options for a config and vocabularies (vocabulary sizes filled in).
models::TransformerSeq2SeqOptions g2p_model_options(const G2PConfig& config, const data::G2PVocabs& vocabs);

}  // namespace heed::train
