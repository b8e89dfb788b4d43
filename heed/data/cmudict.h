// The CMU Pronouncing Dictionary loader: `word  PH1 PH2 ...` lines, alternates as
// `word(2)`, `#` comments. One entry per word with every distinct pronunciation kept
// as a reference; the fixed G2P split of docs/data.md over the entries.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "heed/data/split.h"

namespace heed::data {

struct CmudictOptions {
  // Keep the stress digits of vowels (AH0, AH1, AH2); by default they are removed
  // (AH), as in the G2P literature.
  bool keep_stress = false;
};

struct LexiconEntry {
  std::string word;                                       // lower case, letters and apostrophes
  std::vector<std::vector<std::string>> pronunciations;   // distinct, in file order; never empty
};

// What the loader saw, for logs and for docs/data.md.
struct CmudictStats {
  int64_t lines = 0;             // every line of the file
  int64_t comment_lines = 0;     // blank lines, `;;;` lines and lines that are only a comment
  int64_t entry_lines = 0;       // lines with a word and its phonemes
  int64_t skipped_lines = 0;     // entry lines whose word is not letters and apostrophes
  int64_t duplicate_pronunciations = 0;  // alternates equal to an earlier one of the word
                                         // (after stress removal), dropped
};

struct Lexicon {
  std::vector<LexiconEntry> entries;  // one per word, in order of first appearance
  CmudictStats stats;

  int64_t pronunciation_count() const;
};

// True when `word` is made only of ASCII letters and apostrophes, with at least one
// letter: the words kept for G2P (digits, '.', '-', '_' and other characters are skipped).
bool is_g2p_word(std::string_view word);

// `word` as the loader stores it: ASCII letters lower-cased, every other byte unchanged
// (so `predict` can take "Hello" and still reject "café" by name when encoding).
std::string normalize_g2p_word(std::string_view word);

// Reads a CMUdict file. Throws heed::Error naming the file and line for a missing or
// unreadable file, a line that is not UTF-8, or a line that is not `word phonemes...`
// (a word without phonemes, a phoneme that is not capital letters with an optional
// stress digit).
Lexicon load_cmudict(const std::string& path, const CmudictOptions& options = {});

// The same from a stream; `source_name` names it in error messages.
Lexicon parse_cmudict(std::istream& in, std::string_view source_name,
                      const CmudictOptions& options = {});

// Indices into Lexicon::entries, each in entry order, decided by split_of(word).
struct LexiconSplit {
  std::vector<int64_t> train;
  std::vector<int64_t> validation;
  std::vector<int64_t> test;
};

LexiconSplit split_lexicon(const Lexicon& lexicon, const SplitOptions& options = {});

}  // namespace heed::data
