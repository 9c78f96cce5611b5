// ByteTokenizer: ids are bytes, specials 256..258, and its saved tokenizer.json read back by
// load_tokenizer() encodes and decodes exactly like it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

#include "core/json.h"
#include "models/byte_tokenizer.h"

namespace shardlab::models {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<int64_t>;
using ::testing::HasSubstr;

TEST(ByteTokenizer, EncodeDecode) {
  ByteTokenizer tok;
  EXPECT_EQ(tok.vocab_size(), 259);
  EXPECT_EQ(tok.bos_id(), 256);
  EXPECT_EQ(tok.eos_id(), 257);
  EXPECT_EQ(tok.pad_id(), 258);
  EXPECT_TRUE(tok.add_bos_by_default());
  EXPECT_EQ(tok.encode("hi"), (Ids{104, 105}));
  EXPECT_EQ(tok.encode("hi", true), (Ids{256, 104, 105}));
  EXPECT_EQ(tok.encode("é"), (Ids{0xC3, 0xA9}));
  EXPECT_EQ(tok.encode("a<eos>b<pad"), (Ids{97, 257, 98, 60, 112, 97, 100}));  // "<pad" is incomplete
  EXPECT_EQ(tok.decode({256, 104, 105, 257, 258}), "<bos>hi<eos><pad>");
  EXPECT_EQ(tok.decode({256, 104, 105, 257, 258}, /*skip_special=*/true), "hi");
  EXPECT_THAT([&] { tok.decode({259}); }, ::testing::ThrowsMessage<Error>(HasSubstr("id 259 is not in the vocabulary")));
  EXPECT_EQ(tok.id_to_token(32), "Ġ");
  EXPECT_EQ(tok.token_to_id("Ġ"), 32);
  EXPECT_EQ(tok.token_to_id("<eos>"), 257);
  EXPECT_FALSE(tok.token_to_id("ab").has_value());

  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const Ids ids = tok.encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[b], b);
  EXPECT_EQ(tok.decode(ids), all);
}

class ByteTokenizerFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("shardlab_byte_tok_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(ByteTokenizerFiles, SavedTokenizerJsonLoadsBackIdentically) {
  ByteTokenizer bytes;
  bytes.save(dir_.string());
  ASSERT_TRUE(fs::exists(dir_ / "tokenizer.json"));
  ASSERT_TRUE(fs::exists(dir_ / "tokenizer_config.json"));
  auto loaded = load_tokenizer(dir_.string());
  EXPECT_EQ(loaded->vocab_size(), 259);
  EXPECT_EQ(loaded->bos_id(), 256);
  EXPECT_EQ(loaded->eos_id(), 257);
  EXPECT_EQ(loaded->pad_id(), 258);
  EXPECT_TRUE(loaded->add_bos_by_default());
  for (int64_t id = 0; id < 259; ++id) {
    EXPECT_EQ(loaded->id_to_token(id), bytes.id_to_token(id)) << id;
    EXPECT_EQ(loaded->is_special(id), bytes.is_special(id)) << id;
  }
  std::string all;
  for (int b = 255; b >= 0; --b) all.push_back(static_cast<char>(b));
  for (const std::string& text : {std::string("Hello, world!\n"), std::string("héllo 日本 👋🏽 \xFF\xFE end"),
                                  std::string("<bos>x<eos><pad> <eo"), all}) {
    const Ids ids = bytes.encode(text, true);
    EXPECT_EQ(loaded->encode(text, true), ids) << text;
    EXPECT_EQ(loaded->decode(ids), "<bos>" + text);
    EXPECT_EQ(loaded->decode(ids, true), bytes.decode(ids, true));
  }
  // Literal specials in the text became special ids, so skip_special drops them too.
  EXPECT_EQ(loaded->decode(loaded->encode("<bos>x<eos><pad> <eo"), true), "x <eo");
}

TEST_F(ByteTokenizerFiles, JsonIsHuggingFaceShaped) {
  const json::Value j = ByteTokenizer().to_tokenizer_json();
  EXPECT_EQ(j.at("model").at("type").as_string(), "BPE");
  EXPECT_EQ(j.at("model").at("vocab").size(), 256u);
  EXPECT_EQ(j.at("model").at("merges").size(), 0u);
  EXPECT_EQ(j.at("model").at("vocab").at("Ġ").as_int(), 32);
  EXPECT_EQ(j.at("added_tokens").size(), 3u);
  EXPECT_EQ(j.at("added_tokens").at(size_t{1}).at("content").as_string(), "<eos>");
  EXPECT_EQ(j.at("pre_tokenizer").at("type").as_string(), "ByteLevel");
  EXPECT_EQ(j.at("post_processor").at("type").as_string(), "TemplateProcessing");
  // Without a default bos there is no post-processor, and the config says so.
  ByteTokenizer no_bos(false);
  EXPECT_TRUE(no_bos.to_tokenizer_json().at("post_processor").is_null());
  no_bos.save(dir_.string());
  EXPECT_FALSE(load_tokenizer(dir_.string())->add_bos_by_default());
}

}  // namespace
}  // namespace shardlab::models
