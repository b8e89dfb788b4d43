// G2P vocabularies and examples from a CMUdict lexicon.
#include "heed/data/g2p.h"

#include <set>

#include "heed/data/utf8.h"
#include "heed/tensor/error.h"

namespace heed::data {

G2PVocabs build_g2p_vocabs(const Lexicon& lexicon, std::span<const int64_t> entries) {
  std::set<std::string> chars;
  std::set<std::string> phonemes;
  for (int64_t e : entries) {
    HEED_CHECK(e >= 0 && e < static_cast<int64_t>(lexicon.entries.size()), "build_g2p_vocabs: entry ", e,
               " expected in [0, ", lexicon.entries.size(), ")");
    const LexiconEntry& entry = lexicon.entries[static_cast<size_t>(e)];
    for (std::string& c : split_utf8(entry.word, "build_g2p_vocabs: word")) chars.insert(std::move(c));
    for (const auto& pron : entry.pronunciations) phonemes.insert(pron.begin(), pron.end());
  }
  const std::vector<std::string> c(chars.begin(), chars.end());
  const std::vector<std::string> p(phonemes.begin(), phonemes.end());
  return G2PVocabs{build_vocab("character", c), build_vocab("phoneme", p)};
}

std::vector<Example> make_g2p_examples(const Lexicon& lexicon, std::span<const int64_t> entries,
                                       const G2PVocabs& vocabs, const G2PExampleOptions& options) {
  std::vector<Example> examples;
  examples.reserve(entries.size());
  for (int64_t e : entries) {
    HEED_CHECK(e >= 0 && e < static_cast<int64_t>(lexicon.entries.size()), "make_g2p_examples: entry ", e,
               " expected in [0, ", lexicon.entries.size(), ")");
    const LexiconEntry& entry = lexicon.entries[static_cast<size_t>(e)];
    const std::vector<int64_t> src = encode_chars(vocabs.chars, entry.word, options.encode);
    const size_t n = options.pronunciations == Pronunciations::kAll ? entry.pronunciations.size()
                                                                   : std::min<size_t>(1, entry.pronunciations.size());
    for (size_t p = 0; p < n; ++p) {
      examples.push_back(Example{src, encode_tokens(vocabs.phonemes, entry.pronunciations[p], options.encode), e,
                                 static_cast<int64_t>(p)});
    }
  }
  return examples;
}

}  // namespace heed::data
