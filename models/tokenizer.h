// The tokenizer interface the CLIs and datasets use, and load_tokenizer(), which builds one from a
// Hugging Face model directory (tokenizer.json, plus tokenizer_config.json for the special tokens).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shardlab::models {

// The ids of the special tokens a tokenizer knows about.
struct SpecialIds {
  std::optional<int64_t> bos, eos, pad;
  bool add_bos = false;  // whether the model expects a bos at the start of every sequence
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text`; with add_bos, bos_id() first (an error when there is no bos token).
  // Special tokens written literally in `text` (e.g. "<|eot_id|>") become their ids.
  std::vector<int64_t> encode(std::string_view text, bool add_bos = false) const;
  // The bytes the ids stand for. Byte-level tokenizers return the raw bytes, so a decode of an
  // encode gives the input back exactly, invalid UTF-8 included (no U+FFFD substitution).
  // With skip_special, special tokens are left out. An id outside the vocabulary is an error.
  virtual std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const = 0;

  // One more than the largest id (the embedding table's row count), added tokens included.
  virtual int64_t vocab_size() const = 0;
  virtual std::optional<int64_t> token_to_id(std::string_view token) const = 0;
  // The vocabulary entry as the file spells it (byte-level form for BPE, e.g. "Ġthe").
  virtual std::optional<std::string> id_to_token(int64_t id) const = 0;
  virtual bool is_special(int64_t id) const = 0;

  std::optional<int64_t> bos_id() const { return special_.bos; }
  std::optional<int64_t> eos_id() const { return special_.eos; }
  std::optional<int64_t> pad_id() const { return special_.pad; }
  bool add_bos_by_default() const { return special_.add_bos; }
  const SpecialIds& special_ids() const { return special_; }
  void set_special_ids(const SpecialIds& ids);  // each id must be in the vocabulary

 protected:
  // Appends the ids of `text` (no bos) to `out`.
  virtual void encode_into(std::string_view text, std::vector<int64_t>& out) const = 0;

 private:
  SpecialIds special_;
};

// Reads <model_dir>/tokenizer.json (byte-level BPE, see bpe_tokenizer.h) and, when present,
// <model_dir>/tokenizer_config.json: bos_token / eos_token / pad_token (strings or
// {"content": ...} objects) and add_bos_token. Without a bos_token there, the bos comes from a
// TemplateProcessing post_processor that puts a special token before the text (Llama-3 does this).
// Errors name the file and the key, e.g. 'tokenizer.json: key "model.merges" ...'.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir);

}  // namespace shardlab::models
