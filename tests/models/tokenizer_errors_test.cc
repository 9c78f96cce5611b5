// load_tokenizer / BpeTokenizer::from_json error paths: each names the file and the key at fault
// and the unsupported value, instead of silently tokenizing differently.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/json.h"
#include "models/bpe_tokenizer.h"

namespace shardlab::models {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string fixture(const std::string& name) { return std::string(SHARDLAB_SOURCE_DIR) + "/tests/data/tokenizers/" + name; }

// A minimal valid byte-level tokenizer.json; each test breaks one part of it.
const char* kBase = R"({
  "added_tokens": [{"id": 3, "content": "<s>", "special": true}],
  "normalizer": null,
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
  "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}
})";

std::string load_error(const std::string& text) {
  try {
    BpeTokenizer::from_json(json::parse(text, "tokenizer.json"), "tokenizer.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string with(std::string_view from, std::string_view to) {
  std::string s = kBase;
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

TEST(TokenizerErrors, BaseIsValid) {
  auto tok = BpeTokenizer::from_json(json::parse(kBase), "tokenizer.json");
  EXPECT_EQ(tok->decode(tok->encode("ab<s>")), "ab<s>");
  EXPECT_EQ(tok->encode("ab<s>"), (std::vector<int64_t>{2, 3}));
  // 'c' has no byte token and there is no unk_token: a clear error, not a dropped byte.
  EXPECT_THAT([&] { tok->encode("c"); }, ::testing::ThrowsMessage<Error>(HasSubstr("byte 0x63 has no token")));
}

TEST(TokenizerErrors, MissingFileAndBadJson) {
  EXPECT_THAT([] { load_tokenizer(fixture("no_such_model")); },
              ::testing::ThrowsMessage<Error>(AllOf(HasSubstr("no_such_model/tokenizer.json"), HasSubstr("does not exist"))));
  EXPECT_THAT([] { load_tokenizer(fixture("bad_json")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("bad_json/tokenizer.json:1:")));
}

TEST(TokenizerErrors, ModelFields) {
  EXPECT_THAT(load_error(with(R"("type": "BPE")", R"("type": "WordPiece")")),
              AllOf(HasSubstr("tokenizer.json: key \"model\""), HasSubstr("WordPiece")));
  EXPECT_THAT(load_error(with(R"(, "merges": ["a b"])", "")), HasSubstr("missing key \"model.merges\""));
  EXPECT_THAT(load_error(with(R"("merges": ["a b"])", R"("merges": ["a b", "a zz"])")),
              AllOf(HasSubstr("key \"model.merges[1]\""), HasSubstr("\"zz\", which is not in model.vocab")));
  EXPECT_THAT(load_error(with(R"("merges": ["a b"])", R"("merges": [["b", "a"]])")),
              AllOf(HasSubstr("model.merges[0]"), HasSubstr("\"ba\"")));  // the merged token must exist too
  EXPECT_THAT(load_error(with(R"("merges": ["a b"])", R"("merges": ["ab"])")),
              AllOf(HasSubstr("model.merges[0]"), HasSubstr("two tokens separated by one space")));
  EXPECT_THAT(load_error(with(R"("merges": ["a b"])", R"("merges": [3])")), HasSubstr("got number"));
  EXPECT_THAT(load_error(with(R"("b": 1)", R"("b": "1")")), HasSubstr("key \"model.vocab.b\" must be an integer id"));
  EXPECT_THAT(load_error(with(R"("b": 1)", R"("b": 0)")), HasSubstr("already belongs to \"a\""));
  EXPECT_THAT(load_error(with(R"("type": "BPE")", R"("type": "BPE", "byte_fallback": true)")),
              HasSubstr("model.byte_fallback"));
  EXPECT_THAT(load_error(with(R"("type": "BPE")", R"("type": "BPE", "dropout": 0.1)")), HasSubstr("model.dropout"));
  EXPECT_THAT(load_error(with(R"("type": "BPE")", R"("type": "BPE", "unk_token": "<unk>")")),
              HasSubstr("model.unk_token\" names \"<unk>\""));
}

TEST(TokenizerErrors, UnsupportedPipelineParts) {
  EXPECT_THAT(load_error(with(R"("normalizer": null)", R"("normalizer": {"type": "NFC"})")),
              AllOf(HasSubstr("key \"normalizer\""), HasSubstr("\"NFC\"")));
  EXPECT_THAT(load_error(with(R"("decoder": {"type": "ByteLevel"})", R"("decoder": {"type": "Metaspace"})")),
              HasSubstr("Metaspace"));
  EXPECT_THAT(load_error(with(R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})",
                              R"({"type": "Whitespace"})")),
              AllOf(HasSubstr("key \"pre_tokenizer\""), HasSubstr("\"Whitespace\" pre-tokenizer")));
  EXPECT_THAT(load_error(with(R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})",
                              R"({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\d+"},
                                  "behavior": "Isolated"}, {"type": "ByteLevel", "use_regex": false}]})")),
              AllOf(HasSubstr("pre_tokenizer.pretokenizers[0].pattern.Regex"), HasSubstr("unsupported pattern \"\\d+\"")));
  EXPECT_THAT(load_error(with(R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})",
                              R"({"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, {"type": "Split",
                                  "pattern": {"Regex": "\\s+"}}]})")),
              HasSubstr("ByteLevel must come last"));
  EXPECT_THAT(load_error(with(R"("pre_tokenizer")", R"("unused")")), HasSubstr("has no pre_tokenizer"));
  EXPECT_THAT(load_error(with(R"("special": true)", R"("special": true, "single_word": true)")),
              HasSubstr("added_tokens[0].single_word"));
  EXPECT_THAT(load_error(with(R"("decoder")", R"("post_processor": {"type": "RobertaProcessing"}, "decoder")")),
              HasSubstr("\"RobertaProcessing\" post-processor"));
}

}  // namespace
}  // namespace shardlab::models
