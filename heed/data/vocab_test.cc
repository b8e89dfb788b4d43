// Tests for vocabularies: special ids, JSON round trip, unknown-token errors.
#include "heed/data/vocab.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "heed/tensor/error.h"

namespace heed::data {
namespace {

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Vocab, SpecialsHaveFixedIdsAndTokensAreSorted) {
  const std::vector<std::string> seen = {"c", "a", "'", "b", "a"};
  const Vocab v = build_vocab("character", seen);
  EXPECT_EQ(v.size(), kSpecialCount + 4);
  EXPECT_EQ(v.id("<pad>"), kPadId);
  EXPECT_EQ(v.id("<bos>"), kBosId);
  EXPECT_EQ(v.id("<eos>"), kEosId);
  EXPECT_EQ(v.id("<unk>"), kUnkId);
  EXPECT_EQ(v.id("'"), 4);
  EXPECT_EQ(v.id("a"), 5);
  EXPECT_EQ(v.id("c"), 7);
  EXPECT_EQ(v.token(6), "b");
  EXPECT_THROW(v.token(8), Error);
  EXPECT_THROW(v.token(-1), Error);
  EXPECT_THROW(Vocab("x", {"a", "a"}), Error);
  EXPECT_THROW(Vocab("x", {"<eos>"}), Error);
  EXPECT_THROW(Vocab("x", {""}), Error);
}

TEST(Vocab, JsonRoundTripThroughTextAndFile) {
  const Vocab v("phoneme", {"AA", "AE", "ZH", "\xC3\xA9"});
  const Vocab back = Vocab::from_json(v.to_json());
  EXPECT_EQ(back, v);
  EXPECT_EQ(back.name(), "phoneme");
  EXPECT_EQ(back.id("ZH"), v.id("ZH"));
  const std::string path = (std::filesystem::path(::testing::TempDir()) / "heed_vocab_test.json").string();
  v.save(path);
  EXPECT_EQ(Vocab::load(path), v);
  std::filesystem::remove(path);
}

TEST(Vocab, FromJsonRejectsWhatToJsonNeverWrites) {
  EXPECT_THROW(Vocab::from_json("not json"), Error);
  EXPECT_THROW(Vocab::from_json("[1, 2]"), Error);
  EXPECT_THROW(Vocab::from_json(R"({"format":"other","version":1,"name":"x","tokens":[]})"), Error);
  EXPECT_THROW(Vocab::from_json(R"({"format":"heed.vocab","version":2,"name":"x",)"
                                R"("tokens":["<pad>","<bos>","<eos>","<unk>"]})"),
               Error);
  const std::string swapped = error_of([] {
    Vocab::from_json(R"({"format":"heed.vocab","version":1,"name":"x","tokens":["<bos>","<pad>","<eos>","<unk>"]})");
  });
  EXPECT_NE(swapped.find("'<pad>'"), std::string::npos) << swapped;
  EXPECT_THROW(Vocab::from_json(R"({"format":"heed.vocab","version":1,"name":"x","tokens":["<pad>","<bos>"]})"),
               Error);
  EXPECT_THROW(Vocab::load("/nonexistent/heed/vocab.json"), Error);
}

TEST(Vocab, EncodeRejectsAnUnseenCharacterByName) {
  const Vocab v = build_vocab("character", std::vector<std::string>{"a", "c", "f", "t"});
  EXPECT_EQ(encode_chars(v, "cat"), (std::vector<int64_t>{v.id("c"), v.id("a"), v.id("t")}));
  const std::string msg = error_of([&] { encode_chars(v, "caf\xC3\xA9"); });
  EXPECT_NE(msg.find("'\xC3\xA9' (U+00E9)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("position 4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("caf\xC3\xA9"), std::string::npos) << msg;
  EXPECT_EQ(encode_chars(v, "caf\xC3\xA9", EncodeOptions{.unknown = UnknownToken::kUseUnk}),
            (std::vector<int64_t>{v.id("c"), v.id("a"), v.id("f"), kUnkId}));
  EXPECT_THROW(encode_chars(v, "caf\xE9", EncodeOptions{.unknown = UnknownToken::kUseUnk}), Error);
  EXPECT_NE(error_of([&] { encode_chars(v, "CAT"); }).find("'C' (U+0043)"), std::string::npos);
}

TEST(Vocab, EncodeAndDecodeTokens) {
  const Vocab v("phoneme", {"AE", "K", "T"});
  const std::vector<std::string> cat = {"K", "AE", "T"};
  const std::vector<int64_t> ids = encode_tokens(v, cat);
  EXPECT_EQ(ids, (std::vector<int64_t>{5, 4, 6}));
  const std::vector<int64_t> decoder_output = {kBosId, 5, 4, 6, kEosId, 4, kPadId};
  EXPECT_EQ(decode_tokens(v, decoder_output), cat);
  const std::vector<std::string> bad = {"K", "ZZ"};
  const std::string msg = error_of([&] { encode_tokens(v, bad); });
  EXPECT_NE(msg.find("'ZZ'"), std::string::npos) << msg;
  const Vocab chars("character", {"a", "c", "t"});
  const std::vector<int64_t> word = {6, 4, 5, kEosId};
  EXPECT_EQ(decode_chars(chars, word), "tac");
}

}  // namespace
}  // namespace heed::data
