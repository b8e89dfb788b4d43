// Sequence metrics as the G2P literature defines them: word error rate (a word is right
// when the hypothesis equals any reference) and phoneme error rate (edit distance to the
// closest reference over that reference's length, summed over words).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace heed::train {

// Levenshtein distance (unit-cost insertions, deletions, substitutions).
int64_t edit_distance(std::span<const int64_t> a, std::span<const int64_t> b);
int64_t edit_distance(std::span<const std::string> a, std::span<const std::string> b);

// How one hypothesis scores against its references.
struct WordScore {
  bool correct = false;          // equal to some reference
  int64_t edits = 0;             // edit distance to the closest reference
  int64_t reference_length = 0;  // length of that closest reference
  int64_t closest = 0;           // its index; ties go to the earliest reference
};

// Throws heed::Error when `references` is empty.
WordScore score_word(std::span<const int64_t> hypothesis, std::span<const std::vector<int64_t>> references);
WordScore score_word(std::span<const std::string> hypothesis,
                     std::span<const std::vector<std::string>> references);

// Totals over a test set; rates are in [0, 1] for WER and >= 0 for PER (PER can pass 1
// when hypotheses are much longer than references).
struct SequenceErrorRates {
  int64_t words = 0;
  int64_t word_errors = 0;
  int64_t edits = 0;                // sum of WordScore::edits
  int64_t reference_phonemes = 0;   // sum of WordScore::reference_length

  void add(const WordScore& score);
  void merge(const SequenceErrorRates& other);
  double wer() const;  // word_errors / words; 0 when empty
  double per() const;  // edits / reference_phonemes; 0 when empty, inf when only
                       // empty references were missed
};

}  // namespace heed::train
