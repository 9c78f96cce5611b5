// Hugging Face byte-level BPE (GPT-2, Llama-3): tokenizer.json's model.vocab / model.merges, the
// ByteLevel and Split pre-tokenizers, added tokens, and a per-word merge cache.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/json.h"
#include "models/pretokenizer.h"
#include "models/tokenizer.h"

namespace shardlab::models {

// What a tokenizer.json may contain (anything else is an error naming the key and the value):
//   model:         type "BPE" with vocab (token -> id), merges ("a b" strings or ["a", "b"] pairs;
//                  priority = position), optional unk_token, fuse_unk, ignore_merges (a word that
//                  is itself in the vocab is emitted whole, as Llama-3 sets); dropout must be null,
//                  byte_fallback false, continuing_subword_prefix / end_of_word_suffix empty.
//   pre_tokenizer: ByteLevel (add_prefix_space, use_regex -> the GPT-2 pattern), or a Sequence of
//                  Split{pattern: {"Regex": P}, behavior "Isolated"} steps (P one of the patterns
//                  in pretokenizer.h) ending in ByteLevel.
//   added_tokens:  matched verbatim before pre-tokenization, leftmost then longest first; lstrip /
//                  rstrip take adjacent whitespace into the match; single_word is not supported.
//   normalizer:    null.   decoder: null or ByteLevel.
//   post_processor: null, ByteLevel, TemplateProcessing or a Sequence of them; a special token that
//                  the template puts before the text is reported as template_bos(). Tokens the
//                  template appends are not added by encode (callers add eos themselves).
// Speed: ~0.13 s per MB of English text on one core with a cold cache (tokenizer_speed_test.cc).
class BpeTokenizer : public Tokenizer {
 public:
  // `source` names the file in error messages.
  static std::unique_ptr<BpeTokenizer> from_json(const json::Value& root, const std::string& source);

  std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(kind_.size()); }
  std::optional<int64_t> token_to_id(std::string_view token) const override;
  std::optional<std::string> id_to_token(int64_t id) const override;
  bool is_special(int64_t id) const override;

  std::optional<int64_t> template_bos() const { return template_bos_; }
  size_t num_merges() const { return merges_.size(); }
  size_t cache_size() const;

 protected:
  void encode_into(std::string_view text, std::vector<int64_t>& out) const override;

 private:
  friend class BpeLoader;
  BpeTokenizer() = default;

  enum Kind : uint8_t { kNone = 0, kVocab = 1, kAdded = 2, kSpecial = 3 };
  struct Step {
    bool split;  // a Split step (else the final ByteLevel step)
    SplitPattern pattern;
    bool add_prefix_space;
    bool use_regex;
  };
  struct Added {
    std::string content;
    int32_t id;
    bool lstrip, rstrip;
  };
  struct Merge {
    int32_t rank;
    int32_t id;  // the merged token
  };
  struct StrHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  void encode_segment(std::string_view seg, std::vector<int64_t>& out) const;
  void encode_word(std::string_view word, std::vector<int64_t>& out) const;
  void bpe(std::string_view word, std::vector<int32_t>& ids) const;
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  std::unordered_map<std::string, int32_t, StrHash, std::equal_to<>> vocab_;  // model.vocab
  std::unordered_map<std::string, int32_t, StrHash, std::equal_to<>> added_ids_;
  std::vector<std::string> tokens_;  // by id: the vocab entry or the added token's content
  std::vector<std::string> bytes_;   // by id: what decode emits
  std::vector<uint8_t> kind_;        // by id
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_{};  // byte -> id of its one-char token, -1 if absent
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  std::vector<Step> steps_;
  std::vector<Added> added_;
  std::array<std::vector<int32_t>, 256> added_by_first_byte_;  // indices into added_, longest first
  std::optional<int64_t> template_bos_;

  // Word -> ids, shared by concurrent encode calls.
  static constexpr size_t kMaxCachedWordBytes = 64;
  static constexpr size_t kMaxCacheEntries = 1 << 18;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StrHash, std::equal_to<>> cache_;
};

}  // namespace shardlab::models
