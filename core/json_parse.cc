// The strict JSON parser: one pass over the bytes, recursive descent bounded by kMaxDepth, strings
// copied in runs (no per-character allocation), and line:column computed only when an error is
// reported, so the fast path pays nothing for good messages.
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/atomic_file.h"
#include "core/json.h"
#include "core/utf8.h"

namespace shardlab::json {
namespace {

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0 when it is invalid:
// stray continuation bytes, overlong forms, UTF-16 surrogates and code points above U+10FFFF.
size_t utf8_length(const unsigned char* p, const unsigned char* end) {
  auto cont = [&](size_t i) { return p + i < end && (p[i] & 0xC0) == 0x80; };
  unsigned char c0 = p[0];
  if (c0 < 0xC2) return 0;
  if (c0 < 0xE0) return cont(1) ? 2 : 0;
  if (c0 < 0xF0) {
    if (!cont(1) || !cont(2)) return 0;
    if (c0 == 0xE0 && p[1] < 0xA0) return 0;   // overlong
    if (c0 == 0xED && p[1] >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c0 < 0xF5) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c0 == 0xF0 && p[1] < 0x90) return 0;   // overlong
    if (c0 == 0xF4 && p[1] >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}


class Parser {
 public:
  // line_base is added to reported line numbers (JSONL parses one line at a time).
  Parser(std::string_view text, std::string_view source, int64_t line_base)
      : begin_(text.data()), p_(text.data()), end_(text.data() + text.size()), source_(source), line_base_(line_base) {}

  Value parse_document() {
    if (end_ - p_ >= 3 && std::memcmp(p_, "\xEF\xBB\xBF", 3) == 0) fail_at(p_, "UTF-8 byte order mark is not allowed");
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (p_ != end_) fail_at(p_, "unexpected characters after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail_at(const char* at, std::string_view reason) const {
    int64_t line = 1, col = 1;
    for (const char* c = begin_; c < at; ++c) {
      if (*c == '\n') {
        ++line;
        col = 1;
      } else if ((static_cast<unsigned char>(*c) & 0xC0) != 0x80) {
        ++col;  // columns count code points, not bytes
      }
    }
    SL_FAIL(source_, ":", line + line_base_, ":", col, ": ", reason);
  }
  [[noreturn]] void fail_expected(std::string_view what) const {
    if (p_ == end_) fail_at(p_, std::string("unexpected end of input, expected ") + std::string(what));
    fail_at(p_, std::string("expected ") + std::string(what));
  }

  void skip_ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  Value parse_value(int depth) {
    if (p_ == end_) fail_expected("a value");
    switch (*p_) {
      case '{': return parse_object(depth);
      case '[': return parse_array(depth);
      case '"': {
        std::string s;
        parse_string(s);
        return Value(std::move(s));
      }
      case 't': literal("true"); return Value(true);
      case 'f': literal("false"); return Value(false);
      case 'n': literal("null"); return Value();
      default:
        if (*p_ == '-' || is_digit(*p_)) return parse_number();
        fail_expected("a value");
    }
  }

  void literal(const char* word) {
    size_t n = std::strlen(word);
    if (static_cast<size_t>(end_ - p_) < n || std::memcmp(p_, word, n) != 0)
      fail_at(p_, std::string("invalid literal, expected ") + word);
    p_ += n;
  }

  void enter(int depth) const {
    if (depth >= kMaxDepth) fail_at(p_, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
  }

  Value parse_object(int depth) {
    enter(depth);
    ++p_;  // '{'
    Object obj;
    skip_ws();
    if (p_ < end_ && *p_ == '}') {
      ++p_;
      return Value(std::move(obj));
    }
    while (true) {
      skip_ws();
      if (p_ == end_ || *p_ != '"') fail_expected("a string key");
      const char* key_at = p_;
      std::string key;
      parse_string(key);
      if (obj.contains(key)) fail_at(key_at, "duplicate key \"" + key + "\"");
      skip_ws();
      if (p_ == end_ || *p_ != ':') fail_expected("':' after the key");
      ++p_;
      skip_ws();
      obj.insert(std::move(key), parse_value(depth + 1));
      skip_ws();
      if (p_ < end_ && *p_ == ',') {
        ++p_;
        continue;
      }
      if (p_ < end_ && *p_ == '}') {
        ++p_;
        return Value(std::move(obj));
      }
      fail_expected("',' or '}'");
    }
  }

  Value parse_array(int depth) {
    enter(depth);
    ++p_;  // '['
    Array arr;
    skip_ws();
    if (p_ < end_ && *p_ == ']') {
      ++p_;
      return Value(std::move(arr));
    }
    while (true) {
      skip_ws();
      arr.push_back(parse_value(depth + 1));
      skip_ws();
      if (p_ < end_ && *p_ == ',') {
        ++p_;
        continue;
      }
      if (p_ < end_ && *p_ == ']') {
        ++p_;
        return Value(std::move(arr));
      }
      fail_expected("',' or ']'");
    }
  }

  // p_ is at the opening quote. Plain bytes (ASCII and valid UTF-8) are appended in runs.
  void parse_string(std::string& out) {
    const char* open = p_++;
    while (true) {
      const char* run = p_;
      while (p_ < end_) {
        unsigned char c = static_cast<unsigned char>(*p_);
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
          ++p_;
        } else if (c >= 0x80) {
          size_t n = utf8_length(reinterpret_cast<const unsigned char*>(p_), reinterpret_cast<const unsigned char*>(end_));
          if (n == 0) fail_at(p_, "invalid UTF-8 in string");
          p_ += n;
        } else {
          break;
        }
      }
      out.append(run, static_cast<size_t>(p_ - run));
      if (p_ == end_) fail_at(open, "unterminated string");
      if (*p_ == '"') {
        ++p_;
        return;
      }
      if (*p_ == '\\') {
        parse_escape(out);
      } else {
        fail_at(p_, "control character in string (must be escaped)");
      }
    }
  }

  uint32_t hex4(const char* at) {
    if (end_ - p_ < 4) fail_at(at, "invalid \\u escape: needs 4 hex digits");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = p_[i];
      uint32_t d;
      if (c >= '0' && c <= '9') d = static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') d = static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') d = static_cast<uint32_t>(c - 'A' + 10);
      else fail_at(at, "invalid \\u escape: needs 4 hex digits");
      v = v * 16 + d;
    }
    p_ += 4;
    return v;
  }

  void parse_escape(std::string& out) {
    const char* at = p_;
    if (end_ - p_ < 2) fail_at(at, "unterminated string");
    char e = p_[1];
    p_ += 2;
    switch (e) {
      case '"': out.push_back('"'); return;
      case '\\': out.push_back('\\'); return;
      case '/': out.push_back('/'); return;
      case 'b': out.push_back('\b'); return;
      case 'f': out.push_back('\f'); return;
      case 'n': out.push_back('\n'); return;
      case 'r': out.push_back('\r'); return;
      case 't': out.push_back('\t'); return;
      case 'u': break;
      default:
        if (e > 0x20 && e < 0x7F) fail_at(at, std::string("invalid escape '\\") + e + "'");
        fail_at(at, "invalid escape sequence");
    }
    uint32_t cp = hex4(at);
    if (cp >= 0xDC00 && cp <= 0xDFFF) fail_at(at, "invalid \\u escape: unpaired low surrogate");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      // A high surrogate must be followed by an escaped low surrogate; together they name one
      // code point above U+FFFF.
      if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') fail_at(at, "invalid \\u escape: unpaired high surrogate");
      const char* low_at = p_;
      p_ += 2;
      uint32_t low = hex4(low_at);
      if (low < 0xDC00 || low > 0xDFFF) fail_at(at, "invalid \\u escape: unpaired high surrogate");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    append_utf8(out, cp);
  }

  Value parse_number() {
    const char* start = p_;
    bool neg = *p_ == '-';
    if (neg) ++p_;
    if (p_ == end_ || !is_digit(*p_)) fail_at(start, "invalid number: expected a digit");
    uint64_t mag = 0;
    bool overflow = false;
    if (*p_ == '0') {
      ++p_;
      if (p_ < end_ && is_digit(*p_)) fail_at(start, "invalid number: leading zeros are not allowed");
    } else {
      for (; p_ < end_ && is_digit(*p_); ++p_) {
        uint64_t d = static_cast<uint64_t>(*p_ - '0');
        if (mag > (UINT64_MAX - d) / 10) overflow = true;
        else mag = mag * 10 + d;
      }
    }
    bool integer = true;
    if (p_ < end_ && *p_ == '.') {
      integer = false;
      ++p_;
      if (p_ == end_ || !is_digit(*p_)) fail_at(start, "invalid number: expected a digit after '.'");
      while (p_ < end_ && is_digit(*p_)) ++p_;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      integer = false;
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || !is_digit(*p_)) fail_at(start, "invalid number: expected a digit in the exponent");
      while (p_ < end_ && is_digit(*p_)) ++p_;
    }
    if (integer && !overflow) {
      constexpr uint64_t kMax = static_cast<uint64_t>(INT64_MAX);
      if (!neg && mag <= kMax) return Value(static_cast<int64_t>(mag));
      if (neg && mag <= kMax) return Value(-static_cast<int64_t>(mag));
      if (neg && mag == kMax + 1) return Value(static_cast<int64_t>(INT64_MIN));
    }
    // Fractions, exponents and integers beyond int64: correctly rounded double.
    double d = 0;
    auto r = std::from_chars(start, p_, d);
    if (r.ec == std::errc::result_out_of_range) {
      // from_chars reports both overflow and underflow; strtod tells them apart (inf vs ~0).
      d = std::strtod(std::string(start, p_).c_str(), nullptr);
      if (d == HUGE_VAL || d == -HUGE_VAL) fail_at(start, "number out of range for a double");
    } else if (r.ec != std::errc() || r.ptr != p_) {
      fail_at(start, "invalid number");
    }
    return Value(d);
  }

  const char* begin_;
  const char* p_;
  const char* end_;
  std::string_view source_;
  int64_t line_base_;
};

}  // namespace

Value parse(std::string_view text, std::string_view source) { return Parser(text, source, 0).parse_document(); }

Value parse_file(const std::string& path) { return parse(read_file(path), path); }

std::vector<Value> parse_jsonl(std::string_view text, std::string_view source) {
  std::vector<Value> out;
  size_t pos = 0;
  int64_t line = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view ln = text.substr(pos, nl - pos);
    if (ln.find_first_not_of(" \t\r") != std::string_view::npos) out.push_back(Parser(ln, source, line).parse_document());
    ++line;
    pos = nl + 1;
  }
  return out;
}

}  // namespace shardlab::json
