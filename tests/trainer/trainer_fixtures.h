// Shared by the trainer tests: a tiny Llama config and a deterministic batch stream whose state
// is the index of the next sequence.
#pragma once

#include <algorithm>
#include <vector>

#include "tools/trainer/trainer.h"

namespace shardlab::train {

inline models::LlamaConfig tiny() {
  models::LlamaConfig c;
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 32;
  c.initializer_range = 0.1;
  return c;
}

// Deterministic sequences of varying length: sequence i depends only on i.
inline std::vector<int64_t> sequence(int64_t i) {
  std::vector<int64_t> s;
  const int64_t len = 4 + i % 5;
  for (int64_t t = 0; t < len; ++t) s.push_back((i * 7 + t * 3) % 31 + 1);
  return s;
}

// `per_batch` sequences per micro batch, padded (label -100, id 0) to the longest.
class CountingStream : public BatchStream {
 public:
  explicit CountingStream(int64_t per_batch) : per_batch_(per_batch) {}
  MicroBatch next() override {
    std::vector<std::vector<int64_t>> seqs;
    size_t longest = 0;
    for (int64_t k = 0; k < per_batch_; ++k) {
      seqs.push_back(sequence(index_++));
      longest = std::max(longest, seqs.back().size());
    }
    std::vector<int64_t> ids, labels;
    int64_t targets = 0;
    for (auto& s : seqs) {
      for (size_t t = 0; t < longest; ++t) {
        ids.push_back(t < s.size() ? s[t] : 0);
        labels.push_back(t < s.size() ? s[t] : -100);
        if (t >= 1 && t < s.size()) ++targets;
      }
    }
    const Shape shape = {per_batch_, static_cast<int64_t>(longest)};
    return {{Tensor::from_ints(ids, shape)}, Tensor::from_ints(labels, shape), targets};
  }
  json::Value state() const override {
    json::Value v = json::Value::object();
    v.set("index", index_);
    return v;
  }
  void restore(const json::Value& state) override { index_ = state.at("index").as_int(); }

 private:
  int64_t per_batch_;
  int64_t index_ = 0;
};

}  // namespace shardlab::train
