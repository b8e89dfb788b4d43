// Vocab: construction checks, lookup, encode/decode, and the JSON file form.
#include "heed/data/vocab.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "heed/data/utf8.h"
#include "heed/tensor/error.h"

namespace heed::data {
namespace {

constexpr const char* kFormat = "heed.vocab";
constexpr int kVersion = 1;

bool is_special_spelling(std::string_view t) {
  return t == Vocab::kPadToken || t == Vocab::kBosToken || t == Vocab::kEosToken ||
         t == Vocab::kUnkToken;
}

}  // namespace

Vocab::Vocab(std::string name, std::vector<std::string> tokens) : name_(std::move(name)) {
  tokens_ = {kPadToken, kBosToken, kEosToken, kUnkToken};
  tokens_.reserve(tokens.size() + kSpecialCount);
  for (int64_t i = 0; i < kSpecialCount; ++i) ids_.emplace(tokens_[static_cast<size_t>(i)], i);
  for (std::string& t : tokens) {
    HEED_CHECK(!t.empty(), "Vocab(", name_, "): token ", tokens_.size() - kSpecialCount,
               " is empty; expected non-empty tokens");
    HEED_CHECK(!is_special_spelling(t), "Vocab(", name_, "): token '", t,
               "' is spelled like a special token; expected ordinary tokens only");
    const auto id = static_cast<int64_t>(tokens_.size());
    HEED_CHECK(ids_.emplace(t, id).second, "Vocab(", name_, "): token '", t,
               "' appears twice; expected distinct tokens");
    tokens_.push_back(std::move(t));
  }
}

std::optional<int64_t> Vocab::find(std::string_view token) const {
  const auto it = ids_.find(token);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

int64_t Vocab::id(std::string_view token) const {
  const auto it = ids_.find(token);
  HEED_CHECK(it != ids_.end(), "Vocab(", name_, "): '", token, "' is not in the ", name_,
             " vocabulary (", size(), " tokens); expected a known ", name_);
  return it->second;
}

const std::string& Vocab::token(int64_t id) const {
  HEED_CHECK(id >= 0 && id < size(), "Vocab(", name_, "): id ", id, " expected in [0, ", size(), ")");
  return tokens_[static_cast<size_t>(id)];
}

std::string Vocab::to_json() const {
  nlohmann::json j = {{"format", kFormat}, {"version", kVersion}, {"name", name_}, {"tokens", tokens_}};
  return j.dump();
}

Vocab Vocab::from_json(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  HEED_CHECK(!j.is_discarded() && j.is_object(),
             "Vocab::from_json: text is not a JSON object; expected a vocabulary written by Vocab::to_json");
  HEED_CHECK(j.value("format", std::string()) == kFormat, "Vocab::from_json: format '",
             j.contains("format") ? j["format"].dump() : std::string("(missing)"), "' expected '", kFormat, "'");
  HEED_CHECK(j.contains("version") && j["version"].is_number_integer() && j["version"].get<int>() == kVersion,
             "Vocab::from_json: version ", j.contains("version") ? j["version"].dump() : std::string("(missing)"),
             " expected ", kVersion);
  HEED_CHECK(j.contains("name") && j["name"].is_string(), "Vocab::from_json: 'name' expected a string");
  HEED_CHECK(j.contains("tokens") && j["tokens"].is_array(), "Vocab::from_json: 'tokens' expected an array");
  const nlohmann::json& tokens = j["tokens"];
  HEED_CHECK(tokens.size() >= static_cast<size_t>(kSpecialCount), "Vocab::from_json: ", tokens.size(),
             " tokens; expected at least the ", kSpecialCount, " special tokens");
  const char* specials[] = {kPadToken, kBosToken, kEosToken, kUnkToken};
  std::vector<std::string> regular;
  for (size_t i = 0; i < tokens.size(); ++i) {
    HEED_CHECK(tokens[i].is_string(), "Vocab::from_json: token ", i, " is ", tokens[i].dump(),
               "; expected a string");
    std::string t = tokens[i].get<std::string>();
    if (i < static_cast<size_t>(kSpecialCount)) {
      HEED_CHECK(t == specials[i], "Vocab::from_json: token ", i, " is '", t, "'; expected '",
                 specials[i], "'");
    } else {
      regular.push_back(std::move(t));
    }
  }
  return Vocab(j["name"].get<std::string>(), std::move(regular));
}

void Vocab::save(const std::string& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  HEED_CHECK(out.is_open(), "Vocab::save: cannot open '", path, "' for writing");
  out << to_json() << '\n';
  out.flush();
  HEED_CHECK(out.good(), "Vocab::save: writing '", path, "' failed");
}

Vocab Vocab::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  HEED_CHECK(in.is_open(), "Vocab::load: cannot open '", path, "'; expected a vocabulary JSON file");
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return from_json(text.str());
  } catch (const Error& e) {
    fail("Vocab::load: '", path, "': ", e.what());
  }
}

Vocab build_vocab(std::string name, std::span<const std::string> tokens) {
  std::vector<std::string> sorted(tokens.begin(), tokens.end());
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  return Vocab(std::move(name), std::move(sorted));
}

std::vector<int64_t> encode_chars(const Vocab& vocab, std::string_view word, const EncodeOptions& options) {
  const std::vector<char32_t> cps = decode_utf8(word, "encode_chars: word");
  std::vector<int64_t> ids;
  ids.reserve(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) {
    const std::string ch = encode_utf8(cps[i]);
    const std::optional<int64_t> id = vocab.find(ch);
    if (!id) {
      HEED_CHECK(options.unknown == UnknownToken::kUseUnk, "encode_chars: ", vocab.name(), " ",
                 describe_code_point(cps[i]), " at position ", i + 1, " of '", word, "' is not in the ",
                 vocab.name(), " vocabulary (", vocab.size() - kSpecialCount,
                 " known); expected only characters seen in training");
      ids.push_back(kUnkId);
    } else {
      ids.push_back(*id);
    }
  }
  return ids;
}

std::vector<int64_t> encode_tokens(const Vocab& vocab, std::span<const std::string> tokens,
                                   const EncodeOptions& options) {
  std::vector<int64_t> ids;
  ids.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::optional<int64_t> id = vocab.find(tokens[i]);
    if (!id) {
      HEED_CHECK(options.unknown == UnknownToken::kUseUnk, "encode_tokens: ", vocab.name(), " '",
                 tokens[i], "' at position ", i + 1, " is not in the ", vocab.name(), " vocabulary (",
                 vocab.size() - kSpecialCount, " known); expected only tokens seen in training");
      ids.push_back(kUnkId);
    } else {
      ids.push_back(*id);
    }
  }
  return ids;
}

std::vector<std::string> decode_tokens(const Vocab& vocab, std::span<const int64_t> ids) {
  std::vector<std::string> out;
  for (int64_t id : ids) {
    if (id == kEosId) break;
    if (id == kPadId || id == kBosId) continue;
    out.push_back(vocab.token(id));
  }
  return out;
}

std::string decode_chars(const Vocab& vocab, std::span<const int64_t> ids) {
  std::string out;
  for (const std::string& t : decode_tokens(vocab, ids)) out += t;
  return out;
}

}  // namespace heed::data
