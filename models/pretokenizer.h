// Pre-tokenization for byte-level BPE: the GPT-2 and Llama-3 split regexes as hand-written scanners
// over UTF-8 code points, and GPT-2's byte <-> unicode map that makes every byte a printable char.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shardlab::models {

// The split regexes we implement, recognised by their exact source text:
//  gpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//  llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//  qwen2:  the llama3 pattern with \p{N} (single digits) instead of \p{N}{1,3}
enum class SplitPattern { gpt2, llama3, qwen2 };

inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// nullopt for any other regex (the caller reports it as unsupported).
std::optional<SplitPattern> recognize_split_pattern(std::string_view regex);

// Appends the matches of `pattern` in `text` to `out`, as views into `text`. Like the regex with
// Hugging Face's "Isolated" behaviour: these patterns match every character, so the pieces
// concatenate back to `text`. Invalid UTF-8 bytes are single "other" characters (neither letter,
// number nor whitespace).
void split_text(std::string_view text, SplitPattern pattern, std::vector<std::string_view>& out);

// GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100.. in byte order (space -> U+0120 'Ġ', newline -> U+010A 'Ċ').
const std::array<uint32_t, 256>& bytes_to_unicode();
// The same map as UTF-8 strings (what a byte looks like inside a vocabulary entry).
const std::array<std::string, 256>& byte_to_utf8();
// Inverse: the byte for a code point of the map, or -1.
int unicode_to_byte(uint32_t cp);
// Maps raw bytes to their byte-level string (each byte -> its char's UTF-8).
std::string byte_level_encode(std::string_view bytes);
// Inverse of byte_level_encode; nullopt when some char is not in the map.
std::optional<std::string> byte_level_decode(std::string_view token);

}  // namespace shardlab::models
