// Byte-level BPE encoding and decoding: added-token extraction, pre-tokenization, and the merge
// loop (a heap of candidate pairs over a linked list of symbols, O(n log n) per word).
#include "models/bpe_tokenizer.h"

#include <cstdio>
#include <deque>
#include <queue>

#include "core/error.h"
#include "models/unicode.h"

namespace shardlab::models {
namespace {

// Start of the code point that ends just before byte `i` of s (i > 0).
size_t prev_char_start(std::string_view s, size_t i) {
  size_t j = i - 1;
  while (j > 0 && i - j < 4 && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
  return unicode::decode_utf8(s, j).len == i - j ? j : i - 1;
}

}  // namespace

void BpeTokenizer::encode_into(std::string_view text, std::vector<int64_t>& out) const {
  size_t seg = 0, pos = 0;
  while (pos < text.size()) {
    const auto& cands = added_by_first_byte_[static_cast<unsigned char>(text[pos])];
    const Added* hit = nullptr;
    for (int32_t k : cands) {  // longest first, so the first hit is the longest match here
      const std::string& c = added_[k].content;
      if (text.compare(pos, c.size(), c) == 0) {
        hit = &added_[k];
        break;
      }
    }
    if (!hit) {
      ++pos;
      continue;
    }
    size_t start = pos, end = pos + hit->content.size();
    if (hit->lstrip) {
      while (start > seg) {
        const size_t p = prev_char_start(text, start);
        if (!unicode::is_whitespace(unicode::decode_utf8(text, p).cp)) break;
        start = p;
      }
    }
    if (hit->rstrip) {
      while (end < text.size()) {
        const unicode::CodePoint c = unicode::decode_utf8(text, end);
        if (!unicode::is_whitespace(c.cp)) break;
        end += c.len;
      }
    }
    encode_segment(text.substr(seg, start - seg), out);
    out.push_back(hit->id);
    seg = pos = end;
  }
  encode_segment(text.substr(seg), out);
}

void BpeTokenizer::encode_segment(std::string_view seg, std::vector<int64_t>& out) const {
  if (seg.empty()) return;
  std::vector<std::string_view> cur{seg}, next;
  std::deque<std::string> prefixed;  // pieces that ByteLevel(add_prefix_space) rewrote
  for (const Step& step : steps_) {
    next.clear();
    for (std::string_view piece : cur) {
      if (step.split) {
        split_text(piece, step.pattern, next);
        continue;
      }
      if (step.add_prefix_space && piece[0] != ' ') {
        std::string& p = prefixed.emplace_back();
        p.reserve(piece.size() + 1);
        p.push_back(' ');
        p.append(piece);
        piece = p;
      }
      if (step.use_regex) {
        split_text(piece, SplitPattern::gpt2, next);
      } else {
        next.push_back(piece);
      }
    }
    cur.swap(next);
  }
  for (std::string_view word : cur) encode_word(word, out);
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int64_t>& out) const {
  if (word.empty()) return;
  if (word.size() <= kMaxCachedWordBytes) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  if (ignore_merges_) {
    auto it = vocab_.find(byte_level_encode(word));
    if (it != vocab_.end()) ids.push_back(it->second);
  }
  if (ids.empty()) bpe(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (word.size() <= kMaxCachedWordBytes) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();  // bounded memory on endless input
    cache_.emplace(std::string(word), std::move(ids));
  }
}

void BpeTokenizer::bpe(std::string_view word, std::vector<int32_t>& ids) const {
  ids.clear();
  bool prev_unk = false;
  for (unsigned char b : word) {
    int32_t id = byte_ids_[b];
    if (id < 0) {
      if (!unk_id_) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X", b);
        SL_FAIL("BpeTokenizer::encode: byte ", hex, " has no token (model.vocab lacks \"",
                byte_to_utf8()[b], "\") and there is no model.unk_token");
      }
      if (fuse_unk_ && prev_unk) continue;
      id = *unk_id_;
      prev_unk = true;
    } else {
      prev_unk = false;
    }
    ids.push_back(id);
  }
  const auto n = static_cast<int32_t>(ids.size());
  if (n < 2 || merges_.empty()) return;

  struct Sym {
    int32_t id, prev, next;
    bool dead;
  };
  struct Cand {
    int32_t rank, pos, left_id, right, right_id, new_id;
    // Lowest rank first; among equal ranks (the same pair twice) the leftmost, as HF does.
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Sym> sym(n);
  for (int32_t i = 0; i < n; ++i) sym[i] = {ids[i], i - 1, i + 1 < n ? i + 1 : -1, false};
  std::vector<Cand> storage;
  storage.reserve(n);
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap(std::greater<Cand>{}, std::move(storage));
  auto push = [&](int32_t l) {
    if (l < 0) return;
    const int32_t r = sym[l].next;
    if (r < 0) return;
    auto it = merges_.find(pair_key(sym[l].id, sym[r].id));
    if (it != merges_.end()) heap.push({it->second.rank, l, sym[l].id, r, sym[r].id, it->second.id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& l = sym[c.pos];
    // Stale when either side has merged since: a symbol's id only changes by growing, so the
    // same (position, id) on both sides means the same two spans.
    if (l.dead || l.id != c.left_id || l.next != c.right || sym[c.right].id != c.right_id) continue;
    Sym& r = sym[c.right];
    l.id = c.new_id;
    r.dead = true;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.pos;
    push(l.prev);
    push(c.pos);
  }
  ids.clear();
  for (int32_t i = 0; i >= 0; i = sym[i].next) ids.push_back(sym[i].id);
}

std::string BpeTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  std::string out;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab_size() || kind_[id] == kNone) {
      SL_FAIL("BpeTokenizer::decode: id ", id, " is not in the vocabulary (vocab_size ", vocab_size(), ")");
    }
    if (skip_special && kind_[id] == kSpecial) continue;
    out += bytes_[id];
  }
  return out;
}

std::optional<int64_t> BpeTokenizer::token_to_id(std::string_view token) const {
  if (auto it = added_ids_.find(token); it != added_ids_.end()) return it->second;
  if (auto it = vocab_.find(token); it != vocab_.end()) return it->second;
  return std::nullopt;
}

std::optional<std::string> BpeTokenizer::id_to_token(int64_t id) const {
  if (id < 0 || id >= vocab_size() || kind_[id] == kNone) return std::nullopt;
  return tokens_[id];
}

bool BpeTokenizer::is_special(int64_t id) const {
  return id >= 0 && id < vocab_size() && kind_[id] == kSpecial;
}

size_t BpeTokenizer::cache_size() const {
  std::lock_guard<std::mutex> lock(cache_mu_);
  return cache_.size();
}

}  // namespace shardlab::models
