// Byte-level BPE on the crafted fixtures in tests/data/tokenizers (see make_fixtures.py there):
// expected ids are derived by hand below from the merge ranks. Byte tokens have id = byte value,
// so e.g. 'h' = 104, ' ' = 32; merge i of a fixture creates id 256 + i.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "models/bpe_tokenizer.h"
#include "models/tokenizer.h"

namespace shardlab::models {
namespace {

using Ids = std::vector<int64_t>;

std::string fixture(const std::string& name) { return std::string(SHARDLAB_SOURCE_DIR) + "/tests/data/tokenizers/" + name; }

// gpt2_tiny merges (rank: pair -> id): 0 Ġ t->256 Ġt, 1 h e->257 he, 2 Ġt he->258 Ġthe,
// 3 l l->259 ll, 4 he ll->260 hell, 5 hell o->261 hello, 6 Ġ w->262 Ġw, 7 o r->263 or,
// 8 Ġw or->264 Ġwor, 9 ' s->265 's, 10 a a->266 aa, 11 Ã ©->267 é, 12 Ġ 1->268 Ġ1, 13 2 3->269 23,
// 14 Ġ1 23->270 Ġ123.  Added: <|endoftext|> 271 (special), <|end|> 272 (special), xyz 273, xyzw 274.
class Gpt2Tiny : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override { tok_ = load_tokenizer(fixture(GetParam())); }
  std::unique_ptr<Tokenizer> tok_;
};

TEST_P(Gpt2Tiny, MergesByRank) {
  // "hello": he (r1), ll (r3), he+ll (r4), hell+o (r5).  " the": Ġt (r0), he (r1), Ġt+he (r2).
  // " world": Ġw (r6), or (r7), Ġw+or (r8), then l d stay bytes.
  EXPECT_EQ(tok_->encode("hello the world"), (Ids{261, 258, 264, 108, 100}));
  // "it's" pre-tokenizes to "it" + "'s" (merge 9).
  EXPECT_EQ(tok_->encode("it's"), (Ids{105, 116, 265}));
  // é is the bytes C3 A9 = "Ã©": both occurrences merge.
  EXPECT_EQ(tok_->encode("caféé"), (Ids{99, 97, 102, 267, 267}));
  // Equal ranks go left to right: "aaa" -> aa a, "aaaa" -> aa aa.
  EXPECT_EQ(tok_->encode("aaa"), (Ids{266, 97}));
  EXPECT_EQ(tok_->encode("aaaa"), (Ids{266, 266}));
  // " 123": Ġ1 (r12) before 23 (r13), then Ġ1+23 (r14); GPT-2 keeps the space on the number.
  EXPECT_EQ(tok_->encode("x 123"), (Ids{120, 270}));
  // No merge applies to " hello" here (there is no "Ġ h"): Ġ stays alone, "hello" merges as above.
  EXPECT_EQ(tok_->encode(" hello"), (Ids{32, 261}));
  EXPECT_EQ(tok_->encode(""), Ids{});
}

TEST_P(Gpt2Tiny, AddedTokensMatchLongestFirstBeforePreTokenization) {
  EXPECT_EQ(tok_->encode("hello<|endoftext|>"), (Ids{261, 271}));
  // <|end|> and <|endoftext|> share a prefix; xyz is a prefix of xyzw, the longer one wins.
  EXPECT_EQ(tok_->encode("<|end|><|endoftext|>xyzw xyz"), (Ids{272, 271, 274, 32, 273}));
  EXPECT_EQ(tok_->encode("axyzwb"), (Ids{97, 274, 98}));
  EXPECT_EQ(tok_->encode("<|end"), (Ids{60, 124, 101, 110, 100}));  // incomplete: plain bytes
}

TEST_P(Gpt2Tiny, DecodeAndSkipSpecial) {
  EXPECT_EQ(tok_->decode({261, 258, 264, 108, 100}), "hello the world");
  EXPECT_EQ(tok_->decode({261, 271, 273}), "hello<|endoftext|>xyz");
  EXPECT_EQ(tok_->decode({261, 271, 272, 273}, /*skip_special=*/true), "helloxyz");  // xyz is not special
  EXPECT_TRUE(tok_->is_special(271));
  EXPECT_FALSE(tok_->is_special(273));
  EXPECT_EQ(tok_->vocab_size(), 275);
  EXPECT_EQ(tok_->token_to_id("Ġthe"), 258);
  EXPECT_EQ(tok_->token_to_id("xyzw"), 274);
  EXPECT_EQ(tok_->id_to_token(258), "Ġthe");
  EXPECT_EQ(tok_->id_to_token(32), "Ġ");
  EXPECT_FALSE(tok_->id_to_token(275).has_value());
  EXPECT_FALSE(tok_->token_to_id("nope").has_value());
}

// Both merge spellings ("a b" strings and ["a", "b"] pairs) give the same tokenizer.
INSTANTIATE_TEST_SUITE_P(MergeFormats, Gpt2Tiny, ::testing::Values("gpt2_tiny", "gpt2_tiny_pairs"));

TEST(TokenizerSpecialIds, FromTokenizerConfigObjectsAndTemplate) {
  auto gpt2 = load_tokenizer(fixture("gpt2_tiny"));  // bos/eos as {"content": ...}, add_bos_token false
  EXPECT_EQ(gpt2->bos_id(), 271);
  EXPECT_EQ(gpt2->eos_id(), 271);
  EXPECT_FALSE(gpt2->pad_id().has_value());
  EXPECT_FALSE(gpt2->add_bos_by_default());
  EXPECT_EQ(gpt2->encode("hello", /*add_bos=*/true), (Ids{271, 261}));

  auto pairs = load_tokenizer(fixture("gpt2_tiny_pairs"));  // no tokenizer_config.json, no template
  EXPECT_FALSE(pairs->bos_id().has_value());
  EXPECT_THAT([&] { pairs->encode("hi", true); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("no bos token")));

  auto llama = load_tokenizer(fixture("llama3_tiny"));  // strings, bos also from TemplateProcessing
  EXPECT_EQ(llama->bos_id(), 268);
  EXPECT_EQ(llama->eos_id(), 270);
  EXPECT_TRUE(llama->add_bos_by_default());
}

// llama3_tiny merges: 0 Ġ t->256, 1 h e->257, 2 Ġt he->258 Ġthe, 3 1 2->259, 4 12 3->260 123,
// 5 ' s->261, 6 Ċ Ċ->262, 7 Ã ©->263 é, 8 ä ¸->264, 9 ä¸ Ń->265 中 (E4 B8 AD), 10 Ġ Ġ->266.
// Vocab-only: Ġhello 267 (ignore_merges).  Specials 268 <|begin_of_text|>, 269, 270 <|eot_id|>.
class Llama3Tiny : public ::testing::Test {
 protected:
  void SetUp() override { tok_ = load_tokenizer(fixture("llama3_tiny")); }
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(Llama3Tiny, SplitThenByteLevel) {
  EXPECT_EQ(tok_->encode(" the"), (Ids{258}));
  EXPECT_EQ(tok_->encode("the"), (Ids{116, 257}));  // no "t he" merge
  // Digits in groups of three: "123" merges fully, "45" stays bytes.
  EXPECT_EQ(tok_->encode("12345"), (Ids{260, 52, 53}));
  // Case-insensitive contractions: "'s" merges, "'S" is its own piece of two bytes.
  EXPECT_EQ(tok_->encode("it's IT'S"), (Ids{105, 116, 261, 32, 73, 84, 39, 83}));
  // "a\n\n  b" -> "a" "\n\n" " " " b"
  EXPECT_EQ(tok_->encode("a\n\n  b"), (Ids{97, 262, 32, 32, 98}));
  // "   x" -> "  " (Ġ Ġ merges) and " x"
  EXPECT_EQ(tok_->encode("   x"), (Ids{266, 32, 120}));
  // 中 is three bytes merged into one token; 文 (E6 96 87) stays bytes.
  EXPECT_EQ(tok_->encode("中文"), (Ids{265, 0xE6, 0x96, 0x87}));
  EXPECT_EQ(tok_->encode("héllo"), (Ids{104, 263, 108, 108, 111}));
}

TEST_F(Llama3Tiny, IgnoreMergesEmitsWholeVocabWords) {
  // "Ġhello" is in the vocab but no merge sequence builds it; ignore_merges takes it whole.
  EXPECT_EQ(tok_->encode(" hello"), (Ids{267}));
  EXPECT_EQ(tok_->encode("hello"), (Ids{257, 108, 108, 111}));
}

TEST_F(Llama3Tiny, SpecialTokensAndBos) {
  EXPECT_EQ(tok_->encode("<|begin_of_text|>hi<|eot_id|>"), (Ids{268, 104, 105, 270}));
  EXPECT_EQ(tok_->encode(" the", /*add_bos=*/true), (Ids{268, 258}));
  EXPECT_EQ(tok_->decode({268, 104, 105, 270}, true), "hi");
  EXPECT_EQ(tok_->decode({268, 104, 105, 270}), "<|begin_of_text|>hi<|eot_id|>");
  EXPECT_THAT([&] { tok_->decode({104, 271}); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("id 271 is not in the vocabulary")));
  EXPECT_THAT([&] { tok_->decode({-1}); }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("id -1")));
}

std::vector<std::string> varied_texts() {
  return {
      "The quick brown fox jumps over the lazy dog. It's 12,345.67 dollars!",
      "  leading and trailing spaces  \n\n\tTabs\tand\r\nCRLF lines\n",
      "héllo wörld, Привет мир, مرحبا, שלום, नमस्ते, 日本語のテキスト, 한국어",
      "emoji 👋🏽🎉 family 👨‍👩‍👧 flags 🇫🇷!",
      "invalid \xFF\xFE bytes \xC3 and \xE4\xB8 truncated \x80 tail\xF0",
      "specials <|begin_of_text|><|eot_id|> <|end|><|endoftext|> xyzw mixed in",
      std::string("nul \0 byte", 10),
  };
}

TEST(TokenizerRoundTrip, DecodeOfEncodeIsTheInputForEveryFixture) {
  for (const char* name : {"gpt2_tiny", "gpt2_tiny_pairs", "llama3_tiny"}) {
    auto tok = load_tokenizer(fixture(name));
    for (const std::string& text : varied_texts()) {
      EXPECT_EQ(tok->decode(tok->encode(text)), text) << name << ": " << text;
    }
    std::string all_bytes;
    for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));
    EXPECT_EQ(tok->decode(tok->encode(all_bytes)), all_bytes) << name;
  }
}

TEST(TokenizerRoundTrip, ConcurrentEncodesAgree) {
  auto tok = load_tokenizer(fixture("llama3_tiny"));
  const auto texts = varied_texts();
  std::vector<std::vector<Ids>> results(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 50; ++rep) {
        for (const auto& s : texts) results[t].push_back(tok->encode(s));
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 1; t < 4; ++t) EXPECT_EQ(results[t], results[0]);
}

}  // namespace
}  // namespace shardlab::models
