// UTF-8 decoding and \p{L} / \p{N} / \s classification by binary search over range tables
// (unicode_tables.cc) with a direct lookup for the first 256 code points.
#include "models/unicode.h"

#include <algorithm>
#include <array>

namespace shardlab::models::unicode {

struct Range {
  uint32_t lo, hi;
};
// Defined in unicode_tables.cc (generated).
extern const Range* const kLetterRanges;
extern const size_t kLetterRangeCount;
extern const Range* const kNumberRanges;
extern const size_t kNumberRangeCount;

namespace {

bool in_ranges(uint32_t cp, const Range* r, size_t n) {
  // First range whose upper end is >= cp.
  const Range* it = std::lower_bound(r, r + n, cp, [](const Range& a, uint32_t v) { return a.hi < v; });
  return it != r + n && it->lo <= cp;
}

bool space_cp(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

// Classes of U+0000..U+00FF, built once from the slow path so the two can never disagree.
const std::array<uint8_t, 256>& low_table() {
  static const std::array<uint8_t, 256> t = [] {
    std::array<uint8_t, 256> a{};
    for (uint32_t c = 0; c < 256; ++c) {
      a[c] = static_cast<uint8_t>((in_ranges(c, kLetterRanges, kLetterRangeCount) ? kLetter : 0) |
                                  (in_ranges(c, kNumberRanges, kNumberRangeCount) ? kNumber : 0) |
                                  (space_cp(c) ? kSpace : 0));
    }
    return a;
  }();
  return t;
}

}  // namespace

CodePoint decode_utf8(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {b0, 1};
  uint32_t need, cp, min;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1, cp = b0 & 0x1F, min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2, cp = b0 & 0x0F, min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3, cp = b0 & 0x07, min = 0x10000;
  } else {
    return {kInvalid, 1};  // continuation byte, C0/C1 (always overlong) or F5..FF
  }
  if (i + need >= s.size()) return {kInvalid, 1};  // truncated at the end of the text
  for (uint32_t k = 1; k <= need; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return {kInvalid, 1};
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {kInvalid, 1};
  return {cp, need + 1};
}


bool is_letter(uint32_t cp) { return classify(cp) & kLetter; }
bool is_number(uint32_t cp) { return classify(cp) & kNumber; }
bool is_whitespace(uint32_t cp) { return classify(cp) & kSpace; }

uint8_t classify(uint32_t cp) {
  if (cp < 256) return low_table()[cp];
  if (cp == kInvalid) return 0;
  uint8_t c = 0;
  if (in_ranges(cp, kLetterRanges, kLetterRangeCount)) c |= kLetter;
  else if (in_ranges(cp, kNumberRanges, kNumberRangeCount)) c |= kNumber;
  else if (space_cp(cp)) c |= kSpace;
  return c;
}

}  // namespace shardlab::models::unicode
