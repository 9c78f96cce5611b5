// ByteTokenizer: bytes are ids, specials are matched literally, and the HF-format files it saves.
#include "models/byte_tokenizer.h"

#include <cstring>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "models/pretokenizer.h"

namespace shardlab::models {

ByteTokenizer::ByteTokenizer(bool add_bos_by_default) {
  set_special_ids({kBos, kEos, kPad, add_bos_by_default});
}

void ByteTokenizer::encode_into(std::string_view text, std::vector<int64_t>& out) const {
  for (size_t i = 0; i < text.size(); ++i) {
    // Every special is "<xxx>" of 5 bytes, so one compare per '<' decides.
    if (text[i] == '<' && i + 5 <= text.size()) {
      int64_t hit = -1;
      for (int k = 0; k < 3; ++k) {
        if (std::memcmp(text.data() + i, kSpecialNames[k], 5) == 0) hit = kBos + k;
      }
      if (hit >= 0) {
        out.push_back(hit);
        i += 4;
        continue;
      }
    }
    out.push_back(static_cast<unsigned char>(text[i]));
  }
}

std::string ByteTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  std::string out;
  out.reserve(ids.size());
  for (int64_t id : ids) {
    if (id >= 0 && id < 256) {
      out.push_back(static_cast<char>(id));
    } else if (is_special(id)) {
      if (!skip_special) out += kSpecialNames[id - kBos];
    } else {
      SL_FAIL("ByteTokenizer::decode: id ", id, " is not in the vocabulary (vocab_size ", kVocabSize, ")");
    }
  }
  return out;
}

std::optional<int64_t> ByteTokenizer::token_to_id(std::string_view token) const {
  for (int k = 0; k < 3; ++k) {
    if (token == kSpecialNames[k]) return kBos + k;
  }
  auto bytes = byte_level_decode(token);
  if (bytes && bytes->size() == 1) return static_cast<unsigned char>((*bytes)[0]);
  return std::nullopt;
}

std::optional<std::string> ByteTokenizer::id_to_token(int64_t id) const {
  if (id >= 0 && id < 256) return byte_to_utf8()[id];
  if (is_special(id)) return std::string(kSpecialNames[id - kBos]);
  return std::nullopt;
}

json::Value ByteTokenizer::to_tokenizer_json() const {
  json::Value added = json::Value::array();
  for (int k = 0; k < 3; ++k) {
    json::Value t = json::Value::object();
    t.set("id", kBos + k);
    t.set("content", kSpecialNames[k]);
    t.set("single_word", false);
    t.set("lstrip", false);
    t.set("rstrip", false);
    t.set("normalized", false);
    t.set("special", true);
    added.push_back(std::move(t));
  }
  auto byte_level = [](bool use_regex) {
    json::Value b = json::Value::object();
    b.set("type", "ByteLevel");
    b.set("add_prefix_space", false);
    b.set("trim_offsets", true);
    b.set("use_regex", use_regex);
    return b;
  };
  json::Value vocab = json::Value::object();
  for (int b = 0; b < 256; ++b) vocab.set(byte_to_utf8()[b], b);
  json::Value model = json::Value::object();
  model.set("type", "BPE");
  model.set("dropout", nullptr);
  model.set("unk_token", nullptr);
  model.set("continuing_subword_prefix", nullptr);
  model.set("end_of_word_suffix", nullptr);
  model.set("fuse_unk", false);
  model.set("byte_fallback", false);
  model.set("ignore_merges", false);
  model.set("vocab", std::move(vocab));
  model.set("merges", json::Value::array());

  json::Value post = nullptr;
  if (add_bos_by_default()) {
    auto piece = [](const char* kind, const char* id) {
      json::Value inner = json::Value::object();
      inner.set("id", id);
      inner.set("type_id", 0);
      json::Value p = json::Value::object();
      p.set(kind, std::move(inner));
      return p;
    };
    json::Value single = json::Value::array();
    single.push_back(piece("SpecialToken", "<bos>"));
    single.push_back(piece("Sequence", "A"));
    json::Value pair = single;
    pair.push_back(piece("SpecialToken", "<bos>"));
    pair.push_back(piece("Sequence", "B"));
    json::Value bos = json::Value::object();
    bos.set("id", "<bos>");
    json::Value ids = json::Value::array();
    ids.push_back(kBos);
    bos.set("ids", std::move(ids));
    json::Value toks = json::Value::array();
    toks.push_back("<bos>");
    bos.set("tokens", std::move(toks));
    json::Value specials = json::Value::object();
    specials.set("<bos>", std::move(bos));
    post = json::Value::object();
    post.set("type", "TemplateProcessing");
    post.set("single", std::move(single));
    post.set("pair", std::move(pair));
    post.set("special_tokens", std::move(specials));
  }

  json::Value root = json::Value::object();
  root.set("version", "1.0");
  root.set("truncation", nullptr);
  root.set("padding", nullptr);
  root.set("added_tokens", std::move(added));
  root.set("normalizer", nullptr);
  // use_regex=false: bytes need no word splitting when there are no merges.
  root.set("pre_tokenizer", byte_level(false));
  root.set("post_processor", std::move(post));
  root.set("decoder", byte_level(true));
  root.set("model", std::move(model));
  return root;
}

json::Value ByteTokenizer::to_tokenizer_config_json() const {
  json::Value c = json::Value::object();
  c.set("tokenizer_class", "PreTrainedTokenizerFast");
  c.set("bos_token", "<bos>");
  c.set("eos_token", "<eos>");
  c.set("pad_token", "<pad>");
  c.set("add_bos_token", add_bos_by_default());
  c.set("clean_up_tokenization_spaces", false);
  return c;
}

void ByteTokenizer::save(const std::string& model_dir) const {
  namespace fs = std::filesystem;
  fs::create_directories(model_dir);
  write_file_atomic((fs::path(model_dir) / "tokenizer.json").string(), json::dump_pretty(to_tokenizer_json()) + "\n");
  write_file_atomic((fs::path(model_dir) / "tokenizer_config.json").string(),
                    json::dump_pretty(to_tokenizer_config_json()) + "\n");
}

}  // namespace shardlab::models
