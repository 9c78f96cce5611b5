// Fuzzes models::load_tokenizer on an arbitrary tokenizer.json (bytes after a first NUL, which JSON
// cannot contain, become tokenizer_config.json). A tokenizer that loads must encode and decode a
// few fixed strings, and byte-level BPE must give every string back exactly: decode(encode(s)) == s.
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/json.h"
#include "models/pretokenizer.h"
#include "models/tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

namespace fs = std::filesystem;
namespace json = shardlab::json;
using shardlab::models::Tokenizer;

namespace {

// ASCII, contractions, digits, whitespace runs, multi-byte UTF-8, invalid UTF-8, and the special
// tokens of the seed tokenizers written literally.
const std::vector<std::string> kTexts = {
    "Hello world",
    "I'm   don't  x\n\n\ty",
    "12345 3.14 -7",
    "na\xc3\xafve caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80!",
    std::string("\xff\xfe bad \xc3 utf8 \x80\x00 nul", 20),  // 20 bytes: the NUL is part of it
    "<|endoftext|>hi<|end|> <|begin_of_text|>x<|eot_id|>",
    "   leading and trailing   ",
    "xyzw xyz abcab",
};

// A fresh temp dir per input (memory-backed /dev/shm unless SHARDLAB_FUZZ_TMP names another base),
// removed when the input is done; only a crash leaves one behind, and tools/fuzz.sh empties its base.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("SHARDLAB_FUZZ_TMP");
    std::string tmpl = base ? base : fs::exists("/dev/shm") ? "/dev/shm" : fs::temp_directory_path().string();
    tmpl += "/shardlab-fuzz-XXXXXX";
    if (!::mkdtemp(tmpl.data())) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) std::abort();
}

// What makes decode(encode(s)) differ from s by design, read from the (already accepted) JSON:
// a ByteLevel step with add_prefix_space (the default) adds a space; lstrip/rstrip added tokens
// swallow whitespace.
bool any_prefix_space(const json::Value& p) {
  if (!p.is_object()) return false;
  const json::Value* type = p.find("type");
  if (type && type->is_string() && type->as_string() == "ByteLevel") {
    const json::Value* aps = p.find("add_prefix_space");
    return !aps || aps->is_null() || (aps->is_bool() && aps->as_bool());
  }
  if (const json::Value* list = p.find("pretokenizers"); list && list->is_array()) {
    for (const json::Value& step : list->as_array())
      if (any_prefix_space(step)) return true;
  }
  return false;
}

bool any_strip(const json::Value& root) {
  const json::Value* added = root.find("added_tokens");
  if (!added || !added->is_array()) return false;
  for (const json::Value& a : added->as_array()) {
    for (const char* k : {"lstrip", "rstrip"}) {
      const json::Value* v = a.find(k);
      if (v && v->is_bool() && v->as_bool()) return true;
    }
  }
  return false;
}

// Ids whose decode is not the bytes encode took them from: the unk token, and added tokens that
// share a model.vocab entry whose byte-level form differs from their text (decoded verbatim).
std::vector<int64_t> lossy_ids(const json::Value& root, const Tokenizer& tok) {
  std::vector<int64_t> ids;
  const json::Value* model = root.find("model");
  if (const json::Value* unk = model ? model->find("unk_token") : nullptr; unk && unk->is_string()) {
    if (auto id = tok.token_to_id(unk->as_string())) ids.push_back(*id);
  }
  const json::Value* vocab = model ? model->find("vocab") : nullptr;
  const json::Value* added = root.find("added_tokens");
  if (vocab && added && added->is_array()) {
    for (const json::Value& a : added->as_array()) {
      const json::Value* content = a.find("content");
      if (!content || !content->is_string() || !vocab->find(content->as_string())) continue;
      auto bytes = shardlab::models::byte_level_decode(content->as_string());
      if (bytes && *bytes != content->as_string()) ids.push_back(vocab->find(content->as_string())->as_int());
    }
  }
  return ids;
}

void exercise(const Tokenizer& tok, const json::Value& root) {
  const bool exact = !any_prefix_space(root.find("pre_tokenizer") ? *root.find("pre_tokenizer") : json::Value()) &&
                     !any_strip(root);
  const std::vector<int64_t> lossy = lossy_ids(root, tok);
  for (const std::string& text : kTexts) {
    std::vector<int64_t> ids;
    try {
      ids = tok.encode(text, tok.add_bos_by_default());
    } catch (const shardlab::Error&) {
      continue;  // e.g. a byte with no token and no unk_token
    }
    for (int64_t id : ids) FUZZ_ASSERT(id >= 0 && id < tok.vocab_size(), "encode gave id %lld", (long long)id);
    (void)tok.decode(ids, /*skip_special=*/true);
    std::vector<int64_t> body(ids.begin() + (tok.add_bos_by_default() ? 1 : 0), ids.end());
    const std::string back = tok.decode(body);
    bool check = exact;
    for (int64_t id : body)
      if (std::find(lossy.begin(), lossy.end(), id) != lossy.end()) check = false;
    FUZZ_ASSERT(!check || back == text, "decode(encode(s)) != s for s = \"%s\", got \"%s\"", text.c_str(),
                back.c_str());
  }
  // Lookups both ways over the first ids.
  for (int64_t id = 0; id < std::min<int64_t>(tok.vocab_size(), 512); ++id) {
    if (auto token = tok.id_to_token(id)) (void)tok.token_to_id(*token);
    (void)tok.is_special(id);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const TempDir tmp;
  write_file(tmp.path() / "tokenizer.json", input.substr(0, nul));
  if (nul != std::string_view::npos) write_file(tmp.path() / "tokenizer_config.json", input.substr(nul + 1));
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = shardlab::models::load_tokenizer(tmp.path().string());
  } catch (const shardlab::Error& e) {
    shardlab::fuzz::rejected(e);
    return 0;
  }
  // It loaded, so tokenizer.json is valid JSON: read it again for what the checks must allow for.
  const json::Value root = json::parse(input.substr(0, nul));
  exercise(*tok, root);
  return 0;
}
