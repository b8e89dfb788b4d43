// CMUdict parsing: comments, alternates, stress removal, word filter, and the split.
#include "heed/data/cmudict.h"

#include <filesystem>
#include <fstream>
#include <istream>
#include <unordered_map>

#include "heed/data/utf8.h"
#include "heed/tensor/error.h"

namespace heed::data {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t'; }
bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// A comment starts at `#` at the start of the line or after a space or tab.
std::string_view strip_comment(std::string_view line) {
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '#' && (i == 0 || is_space(line[i - 1]))) return line.substr(0, i);
  }
  return line;
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    const size_t start = i;
    while (i < line.size() && !is_space(line[i])) ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

// `word(2)` -> `word`; any other token is returned whole (`(paren` is a word too).
std::string_view strip_alternate(std::string_view token) {
  if (token.size() < 4 || token.back() != ')') return token;
  const size_t open = token.rfind('(');
  if (open == std::string_view::npos || open == 0 || open + 2 >= token.size()) return token;
  for (size_t i = open + 1; i + 1 < token.size(); ++i) {
    if (!is_digit(token[i])) return token;
  }
  return token.substr(0, open);
}

bool is_phoneme(std::string_view p) {
  size_t i = 0;
  while (i < p.size() && is_upper(p[i])) ++i;
  if (i == 0) return false;
  if (i == p.size()) return true;
  return i + 1 == p.size() && is_digit(p[i]);
}

std::string to_lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (is_upper(c)) c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

int64_t Lexicon::pronunciation_count() const {
  int64_t n = 0;
  for (const LexiconEntry& e : entries) n += static_cast<int64_t>(e.pronunciations.size());
  return n;
}

std::string normalize_g2p_word(std::string_view word) { return to_lower_ascii(word); }

bool is_g2p_word(std::string_view word) {
  bool has_letter = false;
  for (char c : word) {
    if (is_lower(c) || is_upper(c)) {
      has_letter = true;
    } else if (c != '\'') {
      return false;
    }
  }
  return has_letter;
}

Lexicon parse_cmudict(std::istream& in, std::string_view source_name,
                      const CmudictOptions& options) {
  Lexicon lexicon;
  std::unordered_map<std::string, int64_t> index_of;
  std::string raw;
  int64_t line_no = 0;
  while (std::getline(in, raw)) {
    ++line_no;
    std::string_view line = raw;
    if (line_no == 1 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);  // BOM
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (const auto bad = find_invalid_utf8(line)) {
      fail("load_cmudict: ", source_name, ":", line_no, ": byte ", *bad + 1,
           " is not valid UTF-8; expected a UTF-8 text file");
    }
    if (line.substr(0, 3) == ";;;") {
      ++lexicon.stats.comment_lines;
      continue;
    }
    const std::vector<std::string_view> fields = split_fields(strip_comment(line));
    if (fields.empty()) {
      ++lexicon.stats.comment_lines;
      continue;
    }
    HEED_CHECK(fields.size() >= 2, "load_cmudict: ", source_name, ":", line_no, ": word '",
               fields[0], "' has no phonemes; expected `word PH1 PH2 ...`");
    std::vector<std::string> phonemes;
    phonemes.reserve(fields.size() - 1);
    for (size_t i = 1; i < fields.size(); ++i) {
      std::string_view p = fields[i];
      HEED_CHECK(is_phoneme(p), "load_cmudict: ", source_name, ":", line_no, ": phoneme '", p,
                 "' of word '", fields[0],
                 "' is malformed; expected capital letters with an optional stress digit (AH0)");
      if (!options.keep_stress && is_digit(p.back())) p.remove_suffix(1);
      phonemes.emplace_back(p);
    }
    ++lexicon.stats.entry_lines;
    const std::string_view word = strip_alternate(fields[0]);
    if (!is_g2p_word(word)) {
      ++lexicon.stats.skipped_lines;
      continue;
    }
    std::string key = to_lower_ascii(word);
    auto [it, inserted] = index_of.try_emplace(key, static_cast<int64_t>(lexicon.entries.size()));
    if (inserted) lexicon.entries.push_back(LexiconEntry{std::move(key), {}});
    LexiconEntry& entry = lexicon.entries[static_cast<size_t>(it->second)];
    bool duplicate = false;
    for (const auto& p : entry.pronunciations) duplicate = duplicate || p == phonemes;
    if (duplicate) {
      ++lexicon.stats.duplicate_pronunciations;
    } else {
      entry.pronunciations.push_back(std::move(phonemes));
    }
  }
  HEED_CHECK(!in.bad(), "load_cmudict: ", source_name, ": read error after line ", line_no);
  lexicon.stats.lines = line_no;
  return lexicon;
}

Lexicon load_cmudict(const std::string& path, const CmudictOptions& options) {
  std::error_code ec;
  HEED_CHECK(std::filesystem::is_regular_file(path, ec), "load_cmudict: '", path,
             "' is not a readable file; expected a CMUdict file (scripts/fetch_data.sh writes "
             "data/cmudict/cmudict.dict)");
  std::ifstream in(path, std::ios::binary);
  HEED_CHECK(in.is_open(), "load_cmudict: cannot open '", path, "'; expected a readable CMUdict file");
  Lexicon lexicon = parse_cmudict(in, path, options);
  HEED_CHECK(!lexicon.entries.empty(), "load_cmudict: '", path, "' has ", lexicon.stats.lines,
             " lines but no entry made of letters and apostrophes; expected a CMUdict file");
  return lexicon;
}

LexiconSplit split_lexicon(const Lexicon& lexicon, const SplitOptions& options) {
  LexiconSplit split;
  for (size_t i = 0; i < lexicon.entries.size(); ++i) {
    const auto id = static_cast<int64_t>(i);
    switch (split_of(lexicon.entries[i].word, options)) {
      case Split::kTrain: split.train.push_back(id); break;
      case Split::kValidation: split.validation.push_back(id); break;
      case Split::kTest: split.test.push_back(id); break;
    }
  }
  return split;
}

}  // namespace heed::data
