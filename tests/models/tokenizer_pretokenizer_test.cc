// The GPT-2 / Llama-3 split scanners against pieces derived by hand from the regexes' semantics
// (alternatives tried in order, greedy with backtracking), the Unicode classes, and the byte map.
#include <gtest/gtest.h>

#include <cctype>

#include "models/pretokenizer.h"
#include "models/unicode.h"

namespace shardlab::models {
namespace {

using Pieces = std::vector<std::string>;

Pieces split(std::string_view text, SplitPattern p) {
  std::vector<std::string_view> v;
  split_text(text, p, v);
  return Pieces(v.begin(), v.end());
}
Pieces gpt2(std::string_view t) { return split(t, SplitPattern::gpt2); }
Pieces llama3(std::string_view t) { return split(t, SplitPattern::llama3); }

TEST(TokenizerUnicode, AsciiIsExact) {
  for (int c = 0; c < 128; ++c) {
    EXPECT_EQ(unicode::is_letter(c), std::isalpha(c) != 0) << c;
    EXPECT_EQ(unicode::is_number(c), std::isdigit(c) != 0) << c;
    EXPECT_EQ(unicode::is_whitespace(c), std::isspace(c) != 0) << c;  // \t \n \v \f \r and space
  }
}

TEST(TokenizerUnicode, LettersAcrossScripts) {
  // é ß Ω Ж א ا न ก 한 あ 中 𠀀 (CJK ext. B) ǅ (Lt) ʰ (Lm)
  for (uint32_t cp : {0xE9u, 0xDFu, 0x3A9u, 0x416u, 0x5D0u, 0x627u, 0x928u, 0xE01u, 0xD55Cu, 0x3042u, 0x4E2Du,
                      0x20000u, 0x1C5u, 0x2B0u}) {
    EXPECT_TRUE(unicode::is_letter(cp)) << std::hex << cp;
    EXPECT_FALSE(unicode::is_number(cp)) << std::hex << cp;
  }
  // × ÷ € ́ (combining acute, Mn) ् (Devanagari virama, Mn) 😀 。 U+0378 (unassigned)
  for (uint32_t cp : {0xD7u, 0xF7u, 0x20ACu, 0x301u, 0x94Du, 0x1F600u, 0x3002u, 0x378u, unicode::kInvalid}) {
    EXPECT_FALSE(unicode::is_letter(cp)) << std::hex << cp;
  }
}

TEST(TokenizerUnicode, NumbersAndSpaces) {
  // ² ½ (No), ٣ (Arabic-Indic Nd), ३ (Devanagari Nd), Ⅻ (Nl), ０ (fullwidth), 𝟘 (math digit)
  for (uint32_t cp : {0xB2u, 0xBDu, 0x663u, 0x969u, 0x216Bu, 0xFF10u, 0x1D7D8u}) {
    EXPECT_TRUE(unicode::is_number(cp)) << std::hex << cp;
  }
  for (uint32_t cp : {0x85u, 0xA0u, 0x1680u, 0x2003u, 0x2028u, 0x3000u}) EXPECT_TRUE(unicode::is_whitespace(cp));
  for (uint32_t cp : {0x200Bu, 0x180Eu, 0xFEFFu}) EXPECT_FALSE(unicode::is_whitespace(cp));  // not White_Space
}

TEST(TokenizerUnicode, Utf8DecodingRejectsMalformedSequences) {
  EXPECT_EQ(unicode::decode_utf8("\xE4\xB8\xAD", 0).cp, 0x4E2Du);
  EXPECT_EQ(unicode::decode_utf8("\xF0\x9F\x98\x80", 0).len, 4u);
  for (std::string_view bad : {"\x80", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE4\xB8", "\xFF"}) {
    const auto c = unicode::decode_utf8(bad, 0);
    EXPECT_EQ(c.cp, unicode::kInvalid);
    EXPECT_EQ(c.len, 1u);
  }
}

TEST(TokenizerPretokenizer, Gpt2Contractions) {
  EXPECT_EQ(gpt2("don't they're we've I'll he'd it's I'm"),
            (Pieces{"don", "'t", " they", "'re", " we", "'ve", " I", "'ll", " he", "'d", " it", "'s", " I", "'m"}));
  // Case-sensitive: "'S" is not a contraction, so the apostrophe is punctuation on its own.
  EXPECT_EQ(gpt2("IT'S"), (Pieces{"IT", "'", "S"}));
  // 'sound: the first alternative wins even inside a word.
  EXPECT_EQ(gpt2("'sound"), (Pieces{"'s", "ound"}));
}

TEST(TokenizerPretokenizer, Gpt2DigitsPunctuationWhitespace) {
  EXPECT_EQ(gpt2("12345 678"), (Pieces{"12345", " 678"}));  // digits are not grouped in GPT-2
  EXPECT_EQ(gpt2("Hello, world!!"), (Pieces{"Hello", ",", " world", "!!"}));
  EXPECT_EQ(gpt2("(hello"), (Pieces{"(", "hello"}));
  // \s+(?!\S) leaves the last space of a run for the next word; at the end it takes the run.
  EXPECT_EQ(gpt2("a   b  "), (Pieces{"a", "  ", " b", "  "}));
  // "\n\n  b": the run minus its last char, then " b".
  EXPECT_EQ(gpt2("a\n\n  b"), (Pieces{"a", "\n\n ", " b"}));
  // "\n\ny": \s+(?!\S) gives "\n", then \s+ gives the lone "\n" before y.
  EXPECT_EQ(gpt2("x  !!\n\ny"), (Pieces{"x", " ", " !!", "\n", "\n", "y"}));
  EXPECT_EQ(gpt2("\tfoo"), (Pieces{"\t", "foo"}));
  EXPECT_EQ(gpt2(" "), (Pieces{" "}));
  EXPECT_EQ(gpt2(""), Pieces{});
}

TEST(TokenizerPretokenizer, Gpt2UnicodeEmojiAndInvalidBytes) {
  EXPECT_EQ(gpt2("héllo wörld"), (Pieces{"héllo", " wörld"}));
  EXPECT_EQ(gpt2("日本語 テキスト"), (Pieces{"日本語", " テキスト"}));
  EXPECT_EQ(gpt2("Привет мир"), (Pieces{"Привет", " мир"}));
  EXPECT_EQ(gpt2("مرحبا بالعالم"), (Pieces{"مرحبا", " بالعالم"}));
  // नमस्ते: the virama and the vowel sign are marks (Mn), not \p{L}, so they split the word.
  EXPECT_EQ(gpt2("नमस्ते"), (Pieces{"नमस", "्", "त", "े"}));
  // 👋🏽 are symbols: " ?[^\s\p{L}\p{N}]+" takes them together with the '!'.
  EXPECT_EQ(gpt2("hi 👋🏽!"), (Pieces{"hi", " 👋🏽!"}));
  // Invalid bytes are "other" characters and stay bytes.
  EXPECT_EQ(gpt2("a\xFF\xFE" "b \xC3"), (Pieces{"a", "\xFF\xFE", "b", " \xC3"}));
}

TEST(TokenizerPretokenizer, Llama3Contractions) {
  // (?i:...) makes them case-insensitive.
  EXPECT_EQ(llama3("IT'S WE'LL they'Re"), (Pieces{"IT", "'S", " WE", "'LL", " they", "'Re"}));
  // A non-contraction apostrophe may lead a word: [^\r\n\p{L}\p{N}]?\p{L}+
  // " 'sound": the space cannot lead "'" into a word, so " ?[^\s\p{L}\p{N}]+" takes " '".
  EXPECT_EQ(llama3("'hello 'sound"), (Pieces{"'hello", " '", "sound"}));
}

TEST(TokenizerPretokenizer, Llama3DigitsInGroupsOfThree) {
  // The space before a number is not attached to it: " " is \s+ on its own.
  EXPECT_EQ(llama3("12345 678 9"), (Pieces{"123", "45", " ", "678", " ", "9"}));
  EXPECT_EQ(llama3("x1234567y"), (Pieces{"x", "123", "456", "7", "y"}));
  EXPECT_EQ(llama3("٣٤٥٦"), (Pieces{"٣٤٥", "٦"}));  // Arabic-Indic digits are \p{N} too
  EXPECT_EQ(split("12345", SplitPattern::qwen2), (Pieces{"1", "2", "3", "4", "5"}));
}

TEST(TokenizerPretokenizer, Llama3WhitespaceAndNewlines) {
  // \s*[\r\n]+ ends at the last newline of a whitespace run.
  EXPECT_EQ(llama3("a\n\n  b"), (Pieces{"a", "\n\n", " ", " b"}));
  EXPECT_EQ(llama3("a \n \n  b"), (Pieces{"a", " \n \n", " ", " b"}));
  EXPECT_EQ(llama3("hello   \n"), (Pieces{"hello", "   \n"}));
  EXPECT_EQ(llama3("a   b  "), (Pieces{"a", "  ", " b", "  "}));
  EXPECT_EQ(llama3("\r\nx"), (Pieces{"\r\n", "x"}));
  // Any one non-newline char, a tab or punctuation included, may lead a word; " (" is two.
  EXPECT_EQ(llama3("\tfoo (bar"), (Pieces{"\tfoo", " (", "bar"}));
  EXPECT_EQ(llama3("(bar"), (Pieces{"(bar"}));
  // " ?[^\s\p{L}\p{N}]+[\r\n]*" keeps the newlines after punctuation.
  EXPECT_EQ(llama3("x  !!\n\ny"), (Pieces{"x", " ", " !!\n\n", "y"}));
  EXPECT_EQ(llama3("Hello, world!!"), (Pieces{"Hello", ",", " world", "!!"}));
}

TEST(TokenizerPretokenizer, Llama3Unicode) {
  EXPECT_EQ(llama3("héllo wörld"), (Pieces{"héllo", " wörld"}));
  EXPECT_EQ(llama3("中文，日本語"), (Pieces{"中文", "，日本語"}));  // fullwidth comma leads the word
  EXPECT_EQ(llama3("नमस्ते"), (Pieces{"नमस", "्त", "े"}));     // the virama leads "त"
  EXPECT_EQ(llama3("hi 👋🏽!"), (Pieces{"hi", " 👋🏽!"}));
}

TEST(TokenizerPretokenizer, PiecesAlwaysConcatenateToTheInput) {
  const std::string text = "Mixed: 'Tis 1,234.5 héllo\t\t世界!! \r\n\n  end\xFF\xC3 ";
  for (auto p : {SplitPattern::gpt2, SplitPattern::llama3, SplitPattern::qwen2}) {
    std::string joined;
    for (const auto& s : split(text, p)) {
      EXPECT_FALSE(s.empty());
      joined += s;
    }
    EXPECT_EQ(joined, text);
  }
}

TEST(TokenizerPretokenizer, RecognizesOnlyKnownPatterns) {
  EXPECT_EQ(recognize_split_pattern(kLlama3Pattern), SplitPattern::llama3);
  EXPECT_EQ(recognize_split_pattern(kGpt2Pattern), SplitPattern::gpt2);
  EXPECT_FALSE(recognize_split_pattern(R"(\s+)").has_value());
}

TEST(TokenizerByteMap, MatchesGpt2BytesToUnicode) {
  const auto& m = bytes_to_unicode();
  EXPECT_EQ(m['!'], uint32_t('!'));
  EXPECT_EQ(m['~'], uint32_t('~'));
  EXPECT_EQ(m[0xE9], 0xE9u);     // printable Latin-1 maps to itself
  EXPECT_EQ(m[0], 0x100u);       // the first non-printable byte
  EXPECT_EQ(m[' '], 0x120u);     // 'Ġ': 0..32 take 0x100..0x120
  EXPECT_EQ(m['\n'], 0x10Au);    // 'Ċ'
  EXPECT_EQ(m[0x7F], 0x121u);    // DEL follows the 33 control/space bytes
  EXPECT_EQ(m[0xAD], 0x143u);    // soft hyphen is the last one: 'Ń'
  for (int b = 0; b < 256; ++b) EXPECT_EQ(unicode_to_byte(m[b]), b);
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(byte_level_decode(byte_level_encode(all)), all);
  EXPECT_EQ(byte_level_encode(" the"), "Ġthe");
  EXPECT_FALSE(byte_level_decode("a b").has_value());  // a raw space is not in the map
}

}  // namespace
}  // namespace shardlab::models
