// The tokenizer for models trained from scratch: one token per byte (ids 0..255 = the byte value)
// plus <bos>=256, <eos>=257, <pad>=258; it saves itself as a Hugging Face tokenizer.json so a model
// directory is self-describing and load_tokenizer() reads it back.
#pragma once

#include <string>

#include "core/json.h"
#include "models/tokenizer.h"

namespace shardlab::models {

class ByteTokenizer : public Tokenizer {
 public:
  static constexpr int64_t kBos = 256, kEos = 257, kPad = 258, kVocabSize = 259;
  static constexpr const char* kSpecialNames[3] = {"<bos>", "<eos>", "<pad>"};

  // add_bos_by_default: what tokenizer_config.json / the post-processor will say.
  explicit ByteTokenizer(bool add_bos_by_default = true);

  std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const override;
  int64_t vocab_size() const override { return kVocabSize; }
  // Byte tokens are spelled in GPT-2's byte-level alphabet ("Ġ" for a space), as in the saved vocab.
  std::optional<int64_t> token_to_id(std::string_view token) const override;
  std::optional<std::string> id_to_token(int64_t id) const override;
  bool is_special(int64_t id) const override { return id >= kBos && id < kVocabSize; }

  // A byte-level BPE tokenizer.json with this vocabulary, no merges, the specials as added tokens
  // and (when add_bos) a TemplateProcessing post-processor that prepends <bos>, so Hugging Face's
  // tokenizers library encodes exactly as this class does.
  json::Value to_tokenizer_json() const;
  json::Value to_tokenizer_config_json() const;
  // Writes tokenizer.json and tokenizer_config.json into model_dir (created if missing), atomically.
  void save(const std::string& model_dir) const;

 protected:
  // Bytes map to their ids; the literal texts "<bos>", "<eos>", "<pad>" become the special ids,
  // as any Hugging Face tokenizer treats its added tokens.
  void encode_into(std::string_view text, std::vector<int64_t>& out) const override;
};

}  // namespace shardlab::models
