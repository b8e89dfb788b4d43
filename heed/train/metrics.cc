// Edit distance (two-row dynamic programme) and the WER / PER accumulators.
#include "heed/train/metrics.h"

#include <algorithm>
#include <limits>

#include "heed/tensor/error.h"

namespace heed::train {
namespace {

template <class T>
int64_t levenshtein(std::span<const T> a, std::span<const T> b) {
  if (a.size() < b.size()) std::swap(a, b);  // the row runs over the shorter one
  std::vector<int64_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = static_cast<int64_t>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    int64_t diag = row[0];  // distance(a[:i-1], b[:j-1])
    row[0] = static_cast<int64_t>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      const int64_t up = row[j];  // distance(a[:i-1], b[:j])
      const int64_t sub = diag + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({sub, up + 1, row[j - 1] + 1});
      diag = up;
    }
  }
  return row[b.size()];
}

template <class T>
WordScore score(std::span<const T> hyp, std::span<const std::vector<T>> refs) {
  HEED_CHECK(!refs.empty(), "score_word: no references; expected at least one reference pronunciation");
  WordScore best;
  for (size_t r = 0; r < refs.size(); ++r) {
    const std::span<const T> ref(refs[r]);
    const int64_t d = levenshtein(hyp, ref);
    if (r == 0 || d < best.edits) {
      best.edits = d;
      best.reference_length = static_cast<int64_t>(ref.size());
      best.closest = static_cast<int64_t>(r);
    }
  }
  best.correct = best.edits == 0;
  return best;
}

}  // namespace

int64_t edit_distance(std::span<const int64_t> a, std::span<const int64_t> b) { return levenshtein(a, b); }
int64_t edit_distance(std::span<const std::string> a, std::span<const std::string> b) { return levenshtein(a, b); }

WordScore score_word(std::span<const int64_t> hypothesis, std::span<const std::vector<int64_t>> references) {
  return score(hypothesis, references);
}
WordScore score_word(std::span<const std::string> hypothesis,
                     std::span<const std::vector<std::string>> references) {
  return score(hypothesis, references);
}

void SequenceErrorRates::add(const WordScore& s) {
  ++words;
  word_errors += s.correct ? 0 : 1;
  edits += s.edits;
  reference_phonemes += s.reference_length;
}

void SequenceErrorRates::merge(const SequenceErrorRates& o) {
  words += o.words;
  word_errors += o.word_errors;
  edits += o.edits;
  reference_phonemes += o.reference_phonemes;
}

double SequenceErrorRates::wer() const {
  return words == 0 ? 0.0 : static_cast<double>(word_errors) / static_cast<double>(words);
}

double SequenceErrorRates::per() const {
  if (reference_phonemes == 0) return edits == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return static_cast<double>(edits) / static_cast<double>(reference_phonemes);
}

}  // namespace heed::train
