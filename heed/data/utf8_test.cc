// Tests for the strict UTF-8 decoder and encoder.
#include "heed/data/utf8.h"

#include <gtest/gtest.h>

#include "heed/tensor/error.h"

namespace heed::data {
namespace {

TEST(Utf8, DecodesOneToFourByteSequences) {
  const std::vector<char32_t> cps = decode_utf8("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");  // a é € 😀
  ASSERT_EQ(cps.size(), 4u);
  EXPECT_EQ(cps[0], U'a');
  EXPECT_EQ(cps[1], U'\u00E9');
  EXPECT_EQ(cps[2], U'\u20AC');
  EXPECT_EQ(cps[3], U'\U0001F600');
  for (char32_t cp : cps) EXPECT_EQ(decode_utf8(encode_utf8(cp)), std::vector<char32_t>{cp});
  EXPECT_EQ(split_utf8("a\xC3\xA9z"), (std::vector<std::string>{"a", "\xC3\xA9", "z"}));
}

TEST(Utf8, RejectsInvalidSequencesWithTheirOffset) {
  EXPECT_FALSE(find_invalid_utf8("plain ascii").has_value());
  EXPECT_EQ(find_invalid_utf8("caf\xE9"), 3u);              // Latin-1 é
  EXPECT_EQ(find_invalid_utf8("ab\xC0\xAF"), 2u);           // overlong '/'
  EXPECT_EQ(find_invalid_utf8("\xED\xA0\x80"), 0u);         // surrogate U+D800
  EXPECT_EQ(find_invalid_utf8("x\xF4\x90\x80\x80"), 1u);    // above U+10FFFF
  EXPECT_EQ(find_invalid_utf8("\xE2\x82"), 0u);             // truncated
  EXPECT_EQ(find_invalid_utf8("a\x80"), 1u);                // lone continuation byte
  EXPECT_THROW(decode_utf8("caf\xE9"), Error);
  EXPECT_THROW(encode_utf8(0xD800), Error);
  EXPECT_THROW(encode_utf8(0x110000), Error);
}

TEST(Utf8, DescribesCodePointsForMessages) {
  EXPECT_EQ(describe_code_point(U'a'), "'a' (U+0061)");
  EXPECT_EQ(describe_code_point(U'\u00E9'), "'\xC3\xA9' (U+00E9)");
  EXPECT_EQ(describe_code_point(U'\t'), "(U+0009)");
}

}  // namespace
}  // namespace heed::data
