// UTF-8 validation (Unicode 15, table 3-7 "well-formed UTF-8 byte sequences").
#include "core/utf8.h"

#include <cstdint>

namespace shardlab {

size_t first_invalid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  auto cont = [&](size_t k, uint8_t lo = 0x80, uint8_t hi = 0xBF) { return k < n && s[k] >= lo && s[k] <= hi; };
  while (i < n) {
    const uint8_t b = s[i];
    if (b < 0x80) { ++i; continue; }
    if (b >= 0xC2 && b <= 0xDF && cont(i + 1)) { i += 2; continue; }
    if (b == 0xE0 && cont(i + 1, 0xA0) && cont(i + 2)) { i += 3; continue; }
    if (((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) && cont(i + 1) && cont(i + 2)) { i += 3; continue; }
    if (b == 0xED && cont(i + 1, 0x80, 0x9F) && cont(i + 2)) { i += 3; continue; }  // no surrogates
    if (b == 0xF0 && cont(i + 1, 0x90) && cont(i + 2) && cont(i + 3)) { i += 4; continue; }
    if (b >= 0xF1 && b <= 0xF3 && cont(i + 1) && cont(i + 2) && cont(i + 3)) { i += 4; continue; }
    if (b == 0xF4 && cont(i + 1, 0x80, 0x8F) && cont(i + 2) && cont(i + 3)) { i += 4; continue; }
    return i;
  }
  return std::string::npos;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace shardlab
