// Strict UTF-8 (RFC 3629): the decoder behind every text loader's "not UTF-8" error.
#include "heed/data/utf8.h"

#include <cstdint>
#include <cstdio>

#include "heed/tensor/error.h"

namespace heed::data {
namespace {

// Decodes the sequence starting at text[i]; returns its length in bytes, or 0 when it
// is invalid. Writes the code point to *out.
size_t decode_one(std::string_view text, size_t i, char32_t* out) {
  auto byte = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
  const uint8_t b0 = byte(i);
  if (b0 < 0x80) {
    *out = b0;
    return 1;
  }
  size_t len;
  char32_t cp;
  char32_t min_cp;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min_cp = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min_cp = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min_cp = 0x10000;
  } else {
    return 0;  // a continuation byte or 0xF8..0xFF where a sequence must start
  }
  if (i + len > text.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const uint8_t b = byte(i + k);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  *out = cp;
  return len;
}

}  // namespace

std::optional<size_t> find_invalid_utf8(std::string_view text) {
  size_t i = 0;
  char32_t cp;
  while (i < text.size()) {
    const size_t len = decode_one(text, i, &cp);
    if (len == 0) return i;
    i += len;
  }
  return std::nullopt;
}

std::vector<char32_t> decode_utf8(std::string_view text, std::string_view what) {
  std::vector<char32_t> out;
  out.reserve(text.size());
  size_t i = 0;
  char32_t cp;
  while (i < text.size()) {
    const size_t len = decode_one(text, i, &cp);
    HEED_CHECK(len != 0, "decode_utf8: ", what, " is not valid UTF-8 at byte ", i,
               " (byte 0x", std::hex, static_cast<int>(static_cast<uint8_t>(text[i])),
               std::dec, "); expected UTF-8 text");
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::vector<std::string> split_utf8(std::string_view text, std::string_view what) {
  std::vector<std::string> out;
  size_t i = 0;
  char32_t cp;
  while (i < text.size()) {
    const size_t len = decode_one(text, i, &cp);
    HEED_CHECK(len != 0, "split_utf8: ", what, " is not valid UTF-8 at byte ", i,
               "; expected UTF-8 text");
    out.emplace_back(text.substr(i, len));
    i += len;
  }
  return out;
}

std::string encode_utf8(char32_t cp) {
  HEED_CHECK(cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF), "encode_utf8: code point ",
             static_cast<uint32_t>(cp), " expected a Unicode scalar value (not a surrogate, <= 0x10FFFF)");
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

std::string describe_code_point(char32_t cp) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "U+%04X", static_cast<unsigned>(cp));
  const bool printable = cp >= 0x20 && cp != 0x7F && !(cp >= 0x80 && cp < 0xA0) &&
                         cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
  std::string out;
  if (printable) {
    out += '\'';
    out += encode_utf8(cp);
    out += "' ";
  }
  out += '(';
  out += hex;
  out += ')';
  return out;
}

}  // namespace heed::data
