// Hand-written scanners for the GPT-2 / Llama-3 split regexes. Each mirrors a backtracking regex
// engine: at every position the alternatives are tried in order and the first that matches wins,
// with the greedy quantifiers' backtracking worked out per alternative (see the comments).
#include "models/pretokenizer.h"

#include "core/utf8.h"
#include "models/unicode.h"

namespace shardlab::models {
namespace {

using unicode::kLetter;
using unicode::kNumber;
using unicode::kSpace;

struct Char {
  uint32_t cp = 0;
  uint32_t len = 0;  // 0: past the end of the text
  uint8_t cls = 0;
  bool letter() const { return cls & kLetter; }
  bool number() const { return cls & kNumber; }
  bool space() const { return cls & kSpace; }
  // [^\s\p{L}\p{N}]; the end of the text is not a character.
  bool other() const { return len != 0 && cls == 0; }
  bool newline() const { return cp == '\r' || cp == '\n'; }
};

class Scanner {
 public:
  explicit Scanner(std::string_view s) : s_(s) {}
  size_t size() const { return s_.size(); }
  Char at(size_t i) const {
    if (i >= s_.size()) return {};
    const auto b = static_cast<unsigned char>(s_[i]);
    if (b < 0x80) return {b, 1, unicode::classify(b)};
    const unicode::CodePoint c = unicode::decode_utf8(s_, i);
    return {c.cp, c.len, unicode::classify(c.cp)};
  }
  // End of the run of characters satisfying `pred` that starts at i.
  template <typename Pred>
  size_t run(size_t i, Pred pred) const {
    for (Char c = at(i); c.len && pred(c); c = at(i)) i += c.len;
    return i;
  }
  // \s+(?!\S)|\s+ at a whitespace character i: the whole whitespace run when it reaches the end
  // of the text or is a single character, else the run minus its last character (so that the
  // last space can lead the next word).
  size_t trailing_space(size_t i) const {
    size_t last = i, j = i;
    for (Char c = at(j); c.len && c.space(); c = at(j)) last = j, j += c.len;
    if (j == s_.size() || last == i) return j;
    return last;
  }

 private:
  std::string_view s_;
};

uint32_t ascii_lower(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return cp + 32;
  if (cp == 0x17F) return 's';  // LATIN SMALL LETTER LONG S case-folds to 's' under (?i)
  return cp;
}

// 's|'t|'re|'ve|'m|'ll|'d at i (which holds an apostrophe); returns the end or 0.
size_t contraction(const Scanner& sc, size_t i, bool ignore_case) {
  auto fold = [&](uint32_t cp) { return ignore_case ? ascii_lower(cp) : cp; };
  const Char c1 = sc.at(i + 1);
  if (!c1.len) return 0;
  const uint32_t a = fold(c1.cp);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 1 + c1.len;
  if (a != 'r' && a != 'v' && a != 'l') return 0;
  const Char c2 = sc.at(i + 1 + c1.len);
  if (!c2.len) return 0;
  const uint32_t b = fold(c2.cp);
  if ((a == 'l' && b == 'l') || (a != 'l' && b == 'e')) return i + 1 + c1.len + c2.len;
  return 0;
}

size_t gpt2_match(const Scanner& sc, size_t i) {
  const Char c = sc.at(i);
  if (c.cp == '\'') {
    if (size_t e = contraction(sc, i, false)) return e;
  }
  // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': an optional space, then a run of one class.
  const bool sp = c.cp == ' ';
  const Char n = sp ? sc.at(i + 1) : c;
  const size_t start = sp ? i + 1 : i;
  if (n.letter()) return sc.run(start, [](const Char& x) { return x.letter(); });
  if (n.number()) return sc.run(start, [](const Char& x) { return x.number(); });
  if (n.other()) return sc.run(start, [](const Char& x) { return x.other(); });
  // c is whitespace here (a space followed by whitespace or by the end falls through too).
  return sc.trailing_space(i);
}

size_t llama3_match(const Scanner& sc, size_t i, int max_digits) {
  const Char c = sc.at(i);
  if (c.cp == '\'') {
    if (size_t e = contraction(sc, i, true)) return e;
  }
  auto letters = [](const Char& x) { return x.letter(); };
  // [^\r\n\p{L}\p{N}]?\p{L}+ : any one non-newline, non-letter, non-number char may lead a word.
  if (c.letter()) return sc.run(i, letters);
  if (!c.newline() && !c.number() && sc.at(i + c.len).letter()) return sc.run(i + c.len, letters);
  // \p{N}{1,3} (or \p{N} for qwen2)
  if (c.number()) {
    size_t j = i;
    for (int k = 0; k < max_digits; ++k) {
      const Char d = sc.at(j);
      if (!d.number()) break;
      j += d.len;
    }
    return j;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  const bool sp = c.cp == ' ';
  const Char n = sp ? sc.at(i + 1) : c;
  if (n.other()) {
    const size_t j = sc.run(sp ? i + 1 : i, [](const Char& x) { return x.other(); });
    return sc.run(j, [](const Char& x) { return x.newline(); });
  }
  // \s*[\r\n]+ : \s* backtracks to the last newline of the whitespace run, and [\r\n]+ then takes
  // just that newline (the characters after it are non-newline whitespace or not whitespace).
  size_t end_after_newline = 0;
  for (size_t j = i;;) {
    const Char x = sc.at(j);
    if (!x.len || !x.space()) break;
    j += x.len;
    if (x.newline()) end_after_newline = j;
  }
  if (end_after_newline) return end_after_newline;
  return sc.trailing_space(i);
}

}  // namespace

std::optional<SplitPattern> recognize_split_pattern(std::string_view regex) {
  if (regex == kGpt2Pattern) return SplitPattern::gpt2;
  if (regex == kLlama3Pattern) return SplitPattern::llama3;
  if (regex == kQwen2Pattern) return SplitPattern::qwen2;
  return std::nullopt;
}

void split_text(std::string_view text, SplitPattern pattern, std::vector<std::string_view>& out) {
  const Scanner sc(text);
  size_t i = 0;
  while (i < text.size()) {
    size_t e = 0;
    switch (pattern) {
      case SplitPattern::gpt2: e = gpt2_match(sc, i); break;
      case SplitPattern::llama3: e = llama3_match(sc, i, 3); break;
      case SplitPattern::qwen2: e = llama3_match(sc, i, 1); break;
    }
    if (e <= i) e = i + sc.at(i).len;  // unreachable with these patterns; guarantees progress
    out.push_back(text.substr(i, e - i));
    i = e;
  }
}

const std::array<uint32_t, 256>& bytes_to_unicode() {
  static const std::array<uint32_t, 256> map = [] {
    std::array<uint32_t, 256> m{};
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      m[b] = printable ? b : next++;
    }
    return m;
  }();
  return map;
}

const std::array<std::string, 256>& byte_to_utf8() {
  static const std::array<std::string, 256> strs = [] {
    std::array<std::string, 256> s;
    for (int b = 0; b < 256; ++b) shardlab::append_utf8(s[b], bytes_to_unicode()[b]);
    return s;
  }();
  return strs;
}

int unicode_to_byte(uint32_t cp) {
  static const std::array<int16_t, 512> inv = [] {
    std::array<int16_t, 512> a;
    a.fill(-1);
    for (int b = 0; b < 256; ++b) a[bytes_to_unicode()[b]] = static_cast<int16_t>(b);
    return a;
  }();
  return cp < inv.size() ? inv[cp] : -1;
}

std::string byte_level_encode(std::string_view bytes) {
  const auto& m = byte_to_utf8();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char ch : bytes) out += m[static_cast<unsigned char>(ch)];
  return out;
}

std::optional<std::string> byte_level_decode(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    const unicode::CodePoint c = unicode::decode_utf8(token, i);
    const int b = c.cp == unicode::kInvalid ? -1 : unicode_to_byte(c.cp);
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
    i += c.len;
  }
  return out;
}

}  // namespace shardlab::models
