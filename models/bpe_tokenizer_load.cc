// Builds a BpeTokenizer from a parsed tokenizer.json, validating every field it relies on and
// rejecting, by name, the model / pre_tokenizer / normalizer / decoder variants it does not implement.
#include <algorithm>

#include "core/error.h"
#include "models/bpe_tokenizer.h"

namespace shardlab::models {

using json::Ref;
using json::Value;

class BpeLoader {
 public:
  BpeLoader(BpeTokenizer& t, const std::string& source) : t_(t), source_(source) {}

 private:
  int64_t max_id_ = 1024;

 public:

  void load(const Value& root) {
    const Ref r(root, source_);
    r.as_object();  // a top-level array or string is reported as such
    // Ids index dense tables, so they are bounded by the number of entries the file declares (with
    // room for sparse numbering): a 47-byte file must not be able to ask for gigabytes.
    size_t entries = 0;
    if (auto m = r.get("model"); m && m->type() == json::Type::object)
      if (auto v = m->get("vocab"); v && v->type() == json::Type::object) entries += v->size();
    if (auto a = r.get("added_tokens"); a && a->type() == json::Type::array) entries += a->size();
    max_id_ = std::min<int64_t>(int64_t{1} << 26, 2 * static_cast<int64_t>(entries) + 1024);
    load_model(r["model"]);
    load_added(r);
    if (auto n = r.get("normalizer"); n && !n->is_null()) {
      n->fail("is a \"" + type_of(*n) + "\" normalizer; only null is supported");
    }
    auto pre = r.get("pre_tokenizer");
    if (!pre || pre->is_null()) {
      r.fail("has no pre_tokenizer; byte-level BPE needs a ByteLevel pre_tokenizer");
    }
    load_pre_tokenizer(*pre, *pre);
    if (t_.steps_.empty() || t_.steps_.back().split) {
      pre->fail("must end in a ByteLevel pre-tokenizer (only byte-level BPE is supported)");
    }
    if (auto d = r.get("decoder"); d && !d->is_null() && type_of(*d) != "ByteLevel") {
      d->fail("is a \"" + type_of(*d) + "\" decoder; only ByteLevel (or null) is supported");
    }
    if (auto p = r.get("post_processor"); p && !p->is_null()) load_post_processor(*p);
    finish();
  }

 private:
  static std::string type_of(const Ref& obj) { return obj["type"].as_string(); }

  // `where` makes the Ref for an error lazily: building key paths for 100k+ vocab entries is slow.
  template <typename Where>
  void set_token(int64_t id, const std::string& token, BpeTokenizer::Kind kind, const Where& where) {
    // Ids size vectors, so a corrupt huge id must not allocate gigabytes (see max_id_).
    if (id < 0 || id >= max_id_) {
      where().fail("has id " + std::to_string(id) + ", outside [0, " + std::to_string(max_id_) +
                   ") (twice the number of vocab and added entries, plus 1024)");
    }
    if (static_cast<size_t>(id) >= t_.kind_.size()) {
      t_.kind_.resize(id + 1, BpeTokenizer::kNone);
      t_.tokens_.resize(id + 1);
    }
    if (t_.kind_[id] != BpeTokenizer::kNone && t_.tokens_[id] != token) {
      where().fail("gives id " + std::to_string(id) + " to \"" + token + "\", but it already belongs to \"" +
                 t_.tokens_[id] + "\"");
    }
    t_.kind_[id] = kind;
    t_.tokens_[id] = token;
  }

  void load_model(const Ref& m) {
    if (!m.has("type")) m.fail("has no \"type\"; only \"BPE\" (byte-level) is supported");
    const std::string& type = m["type"].as_string();
    if (type != "BPE") m.fail("has type \"" + type + "\"; only \"BPE\" (byte-level) is supported");
    if (auto d = m.get("dropout"); d && !d->is_null() && d->as_double() != 0.0) {
      d->fail("is set; BPE dropout is not supported");
    }
    if (m.get_bool("byte_fallback", false)) {
      m["byte_fallback"].fail("is true; SentencePiece-style byte fallback is not supported");
    }
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (!m.get_string(k, "").empty()) m[k].fail("is set; only byte-level BPE without affixes is supported");
    }
    t_.fuse_unk_ = m.get_bool("fuse_unk", false);
    t_.ignore_merges_ = m.get_bool("ignore_merges", false);

    const Ref vocab = m["vocab"];
    for (const json::Member& e : vocab.as_object()) {
      auto where = [&] { return Ref(e.value, source_, vocab.path() + "." + e.key); };
      if (!e.value.is_integer()) where().fail("must be an integer id");
      set_token(e.value.as_int(), e.key, BpeTokenizer::kVocab, where);
      t_.vocab_.emplace(e.key, static_cast<int32_t>(e.value.as_int()));
    }
    if (auto unk = m.get("unk_token"); unk && !unk->is_null()) {
      auto it = t_.vocab_.find(unk->as_string());
      if (it == t_.vocab_.end()) unk->fail("names \"" + unk->as_string() + "\", which is not in model.vocab");
      t_.unk_id_ = it->second;
    }

    const Ref merges = m["merges"];
    const json::Array& arr = merges.as_array();
    t_.merges_.reserve(arr.size());
    for (size_t i = 0; i < arr.size(); ++i) {
      const Value& v = arr[i];
      std::string a, b;
      auto where = [&] { return Ref(v, source_, merges.path() + "[" + std::to_string(i) + "]"); };
      if (v.is_string()) {
        const std::string& s = v.as_string();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos) {
          where().fail("is \"" + s + "\"; a merge string must be two tokens separated by one space");
        }
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (v.is_array() && v.size() == 2 && v.at(size_t{0}).is_string() && v.at(size_t{1}).is_string()) {
        a = v.at(size_t{0}).as_string();
        b = v.at(size_t{1}).as_string();
      } else {
        where().fail(std::string("must be a \"a b\" string or an [\"a\", \"b\"] pair, got ") + json::type_name(v.type()));
      }
      const int32_t ia = vocab_id(a, where), ib = vocab_id(b, where), im = vocab_id(a + b, where);
      // A repeated merge keeps its first (highest-priority) rank.
      t_.merges_.emplace(BpeTokenizer::pair_key(ia, ib), BpeTokenizer::Merge{static_cast<int32_t>(i), im});
    }
  }

  template <typename Where>
  int32_t vocab_id(const std::string& tok, const Where& where) {
    auto it = t_.vocab_.find(tok);
    if (it == t_.vocab_.end()) where().fail("references \"" + tok + "\", which is not in model.vocab");
    return it->second;
  }

  void load_added(const Ref& r) {
    auto added = r.get("added_tokens");
    if (!added || added->is_null()) return;
    for (size_t i = 0; i < added->size(); ++i) {
      const Ref a = (*added)[i];
      const std::string& content = a["content"].as_string();
      const int64_t id = a["id"].as_int();
      if (content.empty()) a["content"].fail("is empty");
      if (a.get_bool("single_word", false)) a["single_word"].fail("is true; single_word added tokens are not supported");
      if (auto it = t_.vocab_.find(content); it != t_.vocab_.end() && it->second != id) {
        a["id"].fail("is " + std::to_string(id) + ", but model.vocab gives \"" + content + "\" id " +
                     std::to_string(it->second));
      }
      const bool special = a.get_bool("special", false);
      set_token(id, content, special ? BpeTokenizer::kSpecial : BpeTokenizer::kAdded, [&] { return a["id"]; });
      t_.added_ids_[content] = static_cast<int32_t>(id);
      t_.added_.push_back({content, static_cast<int32_t>(id), a.get_bool("lstrip", false), a.get_bool("rstrip", false)});
    }
  }

  void load_pre_tokenizer(const Ref& p, const Ref& top) {
    const std::string type = type_of(p);
    if (!t_.steps_.empty() && !t_.steps_.back().split) {
      top.fail("has a \"" + type + "\" step after ByteLevel; ByteLevel must come last");
    }
    if (type == "Sequence") {
      const Ref list = p["pretokenizers"];
      for (size_t i = 0; i < list.size(); ++i) load_pre_tokenizer(list[i], top);
    } else if (type == "ByteLevel") {
      t_.steps_.push_back({false, SplitPattern::gpt2, p.get_bool("add_prefix_space", true), p.get_bool("use_regex", true)});
    } else if (type == "Split") {
      const Ref pat = p["pattern"];
      if (!pat.has("Regex")) pat.fail("must be {\"Regex\": ...}; string split patterns are not supported");
      const std::string& regex = pat["Regex"].as_string();
      const auto known = recognize_split_pattern(regex);
      if (!known) pat["Regex"].fail("is the unsupported pattern \"" + regex + "\" (supported: the GPT-2, Llama-3 and Qwen2 patterns)");
      const std::string behavior = p.get_string("behavior", "Isolated");
      if (behavior != "Isolated") p["behavior"].fail("is \"" + behavior + "\"; only \"Isolated\" is supported");
      if (p.get_bool("invert", false)) p["invert"].fail("is true; inverted splits are not supported");
      t_.steps_.push_back({true, *known, false, false});
    } else {
      p.fail("is a \"" + type + "\" pre-tokenizer; supported: ByteLevel, Split, Sequence");
    }
  }

  void load_post_processor(const Ref& p) {
    const std::string type = type_of(p);
    if (type == "ByteLevel") return;  // only adjusts offsets
    if (type == "Sequence") {
      const Ref list = p["processors"];
      for (size_t i = 0; i < list.size(); ++i) load_post_processor(list[i]);
      return;
    }
    if (type != "TemplateProcessing") {
      p.fail("is a \"" + type + "\" post-processor; supported: TemplateProcessing, ByteLevel, Sequence");
    }
    const Ref single = p["single"];
    if (single.size() < 2 || !single[0].has("SpecialToken") || !single[1].has("Sequence")) return;
    const Ref tok = single[0]["SpecialToken"]["id"];
    if (auto specials = p.get("special_tokens"); specials && specials->has(tok.as_string())) {
      const Ref ids = (*specials)[tok.as_string()]["ids"];
      if (ids.size() != 1) ids.fail("must hold exactly one id for the leading special token");
      t_.template_bos_ = ids[0].as_int();
    } else if (auto id = t_.token_to_id(tok.as_string())) {
      t_.template_bos_ = *id;
    } else {
      tok.fail("names \"" + tok.as_string() + "\", which is not a token");
    }
  }

  void finish() {
    for (int b = 0; b < 256; ++b) {
      auto it = t_.vocab_.find(byte_to_utf8()[b]);
      t_.byte_ids_[b] = it == t_.vocab_.end() ? -1 : it->second;
    }
    t_.bytes_.resize(t_.kind_.size());
    for (size_t id = 0; id < t_.kind_.size(); ++id) {
      if (t_.kind_[id] == BpeTokenizer::kVocab) {
        // HF's ByteLevel decoder: chars outside the byte map make the token decode as its text.
        auto bytes = byte_level_decode(t_.tokens_[id]);
        t_.bytes_[id] = bytes ? std::move(*bytes) : t_.tokens_[id];
      } else if (t_.kind_[id] != BpeTokenizer::kNone) {
        t_.bytes_[id] = t_.tokens_[id];  // added tokens are written verbatim
      }
    }
    for (size_t k = 0; k < t_.added_.size(); ++k) {
      t_.added_by_first_byte_[static_cast<unsigned char>(t_.added_[k].content[0])].push_back(static_cast<int32_t>(k));
    }
    for (auto& v : t_.added_by_first_byte_) {
      std::stable_sort(v.begin(), v.end(), [&](int32_t x, int32_t y) {
        return t_.added_[x].content.size() > t_.added_[y].content.size();
      });
    }
  }

  BpeTokenizer& t_;
  const std::string& source_;
};

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_json(const json::Value& root, const std::string& source) {
  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer());
  BpeLoader(*t, source).load(root);
  return t;
}

}  // namespace shardlab::models
