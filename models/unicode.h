// UTF-8 decoding and the Unicode classes the pre-tokenizer regexes need (\p{L}, \p{N}, \s), without
// a regex library: std::regex has no \p{..} classes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace shardlab::models::unicode {

// Marks a byte that does not start a valid UTF-8 sequence (stray continuation byte, overlong
// form, surrogate, > U+10FFFF, truncated sequence). Such a byte is one "code point" of its own
// that is neither a letter, a number nor whitespace, so byte-level BPE still round-trips it.
inline constexpr uint32_t kInvalid = 0xFFFFFFFFu;

struct CodePoint {
  uint32_t cp;   // the scalar value, or kInvalid
  uint32_t len;  // bytes consumed, 1..4 (1 for an invalid byte)
};

// Decodes the code point starting at s[i] (i < s.size()); strict RFC 3629 validation.
CodePoint decode_utf8(std::string_view s, size_t i);

// Category classes. Letters are the general categories Lu Ll Lt Lm Lo (\p{L}), numbers Nd Nl No
// (\p{N}), both from a range table generated from the Unicode Character Database 14.0 covering
// every script (Latin, Greek, Cyrillic, Armenian, Hebrew, Arabic, Devanagari and the other Indic
// scripts, Thai, Hangul, kana, CJK ideographs incl. the supplementary planes, ...); ASCII and
// Latin-1 are answered from a direct table. Whitespace is Oniguruma's Unicode \s: U+0009-000D,
// U+0020, U+0085, U+00A0, U+1680, U+2000-200A, U+2028, U+2029, U+202F, U+205F, U+3000.
bool is_letter(uint32_t cp);
bool is_number(uint32_t cp);
bool is_whitespace(uint32_t cp);

// Bit set of the classes above, cheap for ASCII.
enum : uint8_t { kLetter = 1, kNumber = 2, kSpace = 4 };
uint8_t classify(uint32_t cp);

}  // namespace shardlab::models::unicode
