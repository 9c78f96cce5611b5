// UTF-8 validation for text inputs (configs, datasets) whose bytes must survive a round trip.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace shardlab {

// Byte offset of the first byte that does not start a well-formed UTF-8 sequence (overlong forms,
// surrogates and code points above U+10FFFF are ill-formed), or std::string::npos if all is valid.
size_t first_invalid_utf8(std::string_view text);

// Appends the UTF-8 encoding of code point `cp` (at most U+10FFFF) to `out`.
void append_utf8(std::string& out, uint32_t cp);

}  // namespace shardlab
