// Tokenizer's shared parts (bos handling, special ids) and load_tokenizer(): tokenizer.json plus
// the special-token names from tokenizer_config.json.
#include "models/tokenizer.h"

#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json.h"
#include "models/bpe_tokenizer.h"

namespace shardlab::models {

std::vector<int64_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int64_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos) {
    SL_CHECK(special_.bos.has_value(), "Tokenizer::encode: add_bos was requested but the tokenizer has no bos token");
    out.push_back(*special_.bos);
  }
  encode_into(text, out);
  return out;
}

void Tokenizer::set_special_ids(const SpecialIds& ids) {
  const std::pair<const char*, std::optional<int64_t>> all[] = {{"bos", ids.bos}, {"eos", ids.eos}, {"pad", ids.pad}};
  for (const auto& [name, id] : all) {
    SL_CHECK(!id || id_to_token(*id).has_value(), "Tokenizer: ", name, " id ", *id,
             " is not in the vocabulary (vocab_size ", vocab_size(), ")");
  }
  SL_CHECK(!ids.add_bos || ids.bos, "Tokenizer: add_bos is set but there is no bos token");
  special_ = ids;
}

namespace {

// bos_token & co: a string, an {"content": ...} object (AddedToken), or null.
std::optional<int64_t> config_token(const json::Ref& cfg, const char* key, const Tokenizer& tok) {
  auto v = cfg.get(key);
  if (!v || v->is_null()) return std::nullopt;
  std::string name;
  if (v->type() == json::Type::string) {
    name = v->as_string();
  } else if (v->type() == json::Type::object && v->has("content")) {
    name = (*v)["content"].as_string();
  } else {
    v->fail(std::string("must be a string or an object with \"content\", got ") + json::type_name(v->type()));
  }
  auto id = tok.token_to_id(name);
  if (!id) v->fail("names \"" + name + "\", which is not in the tokenizer's vocabulary");
  return id;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const std::string path = (fs::path(model_dir) / "tokenizer.json").string();
  SL_CHECK(fs::is_regular_file(path), "load_tokenizer: ", path, " does not exist (the model directory '", model_dir,
           "' has no tokenizer.json)");
  const json::Value root = json::parse(read_file(path), path);
  std::unique_ptr<BpeTokenizer> tok = BpeTokenizer::from_json(root, path);

  SpecialIds ids;
  ids.bos = tok->template_bos();
  ids.add_bos = ids.bos.has_value();
  const std::string cfg_path = (fs::path(model_dir) / "tokenizer_config.json").string();
  if (fs::exists(cfg_path)) {
    const json::Value cfg_value = json::parse(read_file(cfg_path), cfg_path);
    const json::Ref cfg(cfg_value, cfg_path);
    cfg.as_object();
    if (auto bos = config_token(cfg, "bos_token", *tok)) ids.bos = bos;
    ids.eos = config_token(cfg, "eos_token", *tok);
    ids.pad = config_token(cfg, "pad_token", *tok);
    ids.add_bos = cfg.get_bool("add_bos_token", ids.add_bos);
    if (ids.add_bos && !ids.bos) cfg["add_bos_token"].fail("is true but there is no bos_token");
  }
  tok->set_special_ids(ids);
  return tok;
}

}  // namespace shardlab::models
