// Token vocabularies (characters, phonemes, words) with the four special tokens at fixed
// ids, encoding that rejects unseen tokens by name, and a JSON form checkpoints carry.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace heed::data {

inline constexpr int64_t kPadId = 0;  // padding; never a prediction target
inline constexpr int64_t kBosId = 1;  // start of a target sequence (decoder input)
inline constexpr int64_t kEosId = 2;  // end of a sequence
inline constexpr int64_t kUnkId = 3;  // unknown token, only where EncodeOptions allow it
inline constexpr int64_t kSpecialCount = 4;

// What encoding does with a token the vocabulary has never seen.
enum class UnknownToken {
  kError,   // throw heed::Error naming the token (G2P `predict` uses this)
  kUseUnk,  // map it to kUnkId
};

struct EncodeOptions {
  UnknownToken unknown = UnknownToken::kError;
};

class Vocab {
 public:
  // `name` says what the tokens are ("character", "phoneme") in error messages.
  // `tokens` are the regular tokens, given ids kSpecialCount, kSpecialCount + 1, ... in
  // order; throws heed::Error for an empty token, a duplicate or a special's spelling.
  explicit Vocab(std::string name = "token", std::vector<std::string> tokens = {});

  // The spellings of the special tokens.
  static constexpr const char* kPadToken = "<pad>";
  static constexpr const char* kBosToken = "<bos>";
  static constexpr const char* kEosToken = "<eos>";
  static constexpr const char* kUnkToken = "<unk>";

  const std::string& name() const { return name_; }
  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }  // V, specials included
  const std::vector<std::string>& tokens() const { return tokens_; }    // indexed by id

  std::optional<int64_t> find(std::string_view token) const;
  // The id of `token`; throws heed::Error naming it when it is not in the vocabulary.
  int64_t id(std::string_view token) const;
  // The token with id `id`; throws heed::Error when id is outside [0, size()).
  const std::string& token(int64_t id) const;

  // {"format": "heed.vocab", "version": 1, "name": ..., "tokens": [...all, by id...]}.
  std::string to_json() const;
  // Throws heed::Error when `json` is not a vocabulary written by to_json.
  static Vocab from_json(std::string_view json);
  void save(const std::string& path) const;
  static Vocab load(const std::string& path);

  bool operator==(const Vocab& other) const { return name_ == other.name_ && tokens_ == other.tokens_; }

 private:
  std::string name_;
  std::vector<std::string> tokens_;
  std::map<std::string, int64_t, std::less<>> ids_;
};

// A vocabulary of the distinct `tokens`, sorted by their bytes (so by code point for
// UTF-8 characters): the same set gives the same ids on every run.
Vocab build_vocab(std::string name, std::span<const std::string> tokens);

// The code points of the UTF-8 `word` as ids. An unseen character throws heed::Error
// naming the character (and its U+ number), its position and the word, unless
// `options` maps it to kUnkId. A word that is not UTF-8 always throws.
std::vector<int64_t> encode_chars(const Vocab& vocab, std::string_view word,
                                  const EncodeOptions& options = {});

// Each token as its id; an unseen token throws heed::Error naming it (or maps to kUnkId).
std::vector<int64_t> encode_tokens(const Vocab& vocab, std::span<const std::string> tokens,
                                   const EncodeOptions& options = {});

// The tokens of `ids` up to the first kEosId, skipping kPadId and kBosId.
std::vector<std::string> decode_tokens(const Vocab& vocab, std::span<const int64_t> ids);

// decode_tokens joined without separators (characters back into a word).
std::string decode_chars(const Vocab& vocab, std::span<const int64_t> ids);

}  // namespace heed::data
