// The grapheme-to-phoneme task's data: vocabularies built from the training words and
// lexicon entries turned into (character ids, phoneme ids) examples for batching.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "heed/data/cmudict.h"
#include "heed/data/vocab.h"

namespace heed::data {

// One sequence pair: source ids (no bos/eos) and target ids (no bos/eos; batching adds
// them), with where it came from. Inference examples have an empty target.
struct Example {
  std::vector<int64_t> src;
  std::vector<int64_t> tgt;
  int64_t entry = -1;          // index of the word in Lexicon::entries
  int64_t pronunciation = -1;  // index into that entry's pronunciations; -1 when none
};

struct G2PVocabs {
  Vocab chars{"character"};
  Vocab phonemes{"phoneme"};
};

// The characters and phonemes of the given entries (the training words), sorted.
G2PVocabs build_g2p_vocabs(const Lexicon& lexicon, std::span<const int64_t> entries);

// Which pronunciations of a word become training examples.
enum class Pronunciations {
  kAll,    // one example per (word, pronunciation): every reference is a target
  kFirst,  // one example per word: its first pronunciation in file order
};

struct G2PExampleOptions {
  Pronunciations pronunciations = Pronunciations::kAll;
  EncodeOptions encode;  // what to do with characters or phonemes the vocabularies lack
};

// Examples for `entries`, in the order given (and pronunciations in file order).
std::vector<Example> make_g2p_examples(const Lexicon& lexicon, std::span<const int64_t> entries,
                                       const G2PVocabs& vocabs, const G2PExampleOptions& options = {});

}  // namespace heed::data
