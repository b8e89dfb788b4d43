// UTF-8 validation, decoding and encoding for the text loaders (CMUdict, vocabularies).
// Strict: overlong forms, surrogates and code points above U+10FFFF are invalid.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace heed::data {

// Byte offset of the first invalid UTF-8 sequence in `text`, or nullopt when it is valid.
std::optional<size_t> find_invalid_utf8(std::string_view text);

// The code points of `text`; throws heed::Error naming `what` and the byte offset when
// `text` is not valid UTF-8.
std::vector<char32_t> decode_utf8(std::string_view text, std::string_view what = "text");

// `text` split into one string per code point (each the UTF-8 bytes of that code point).
std::vector<std::string> split_utf8(std::string_view text, std::string_view what = "text");

// The UTF-8 bytes of one code point; throws heed::Error for surrogates and > U+10FFFF.
std::string encode_utf8(char32_t code_point);

// A code point as a person reads it in an error message: 'a' (U+0061), or only
// (U+0007) for control characters.
std::string describe_code_point(char32_t code_point);

}  // namespace heed::data
