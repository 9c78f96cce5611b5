// Greedy and top-k/top-p sampling over a KV-cached Llama.
#include "models/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/grad_mode.h"
#include "core/ops.h"
#include "core/random.h"

namespace shardlab::models {

int64_t sample_next_token(const std::vector<double>& logits, const GenerateOptions& o, uint64_t draw) {
  const int64_t V = static_cast<int64_t>(logits.size());
  if (o.greedy) return std::max_element(logits.begin(), logits.end()) - logits.begin();
  SL_CHECK(o.temperature > 0, "generate: temperature must be positive, got ", o.temperature);
  std::vector<int64_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  // Highest logit first; ties broken by id so the order is deterministic.
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; });
  int64_t keep = o.top_k > 0 ? std::min(o.top_k, V) : V;
  std::vector<double> probs(keep);
  const double top = logits[order[0]] / o.temperature;
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) total += probs[i] = std::exp(logits[order[i]] / o.temperature - top);
  if (o.top_p < 1.0) {
    // Smallest prefix whose probability reaches top_p (always at least one token).
    double cumulative = 0;
    int64_t n = 0;
    while (n < keep && cumulative < o.top_p * total) cumulative += probs[n++];
    keep = std::max<int64_t>(n, 1);
    total = std::accumulate(probs.begin(), probs.begin() + keep, 0.0);
  }
  double u = uniform01(o.seed, draw) * total;
  for (int64_t i = 0; i < keep; ++i) {
    u -= probs[i];
    if (u <= 0) return order[i];
  }
  return order[keep - 1];
}

std::vector<int64_t> generate(LlamaForCausalLM& model, const std::vector<int64_t>& prompt, const GenerateOptions& o) {
  SL_CHECK(!prompt.empty(), "generate: the prompt is empty");
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const int64_t V = model.config().vocab_size;
  std::vector<int64_t> sequence = prompt, out;
  KvCache cache;
  auto last_logits = [&](const Tensor& logits) {  // (1, T, V) -> last row
    return ops::narrow(ops::view(logits, {-1, V}), 0, logits.size(1) - 1, 1).to_double_vector();
  };
  std::vector<double> row;
  if (o.use_cache) {
    row = last_logits(model.logits({Tensor::from_ints(prompt, {1, static_cast<int64_t>(prompt.size())}), {}, {}, &cache}));
  }
  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    if (!o.use_cache)
      row = last_logits(model.logits({Tensor::from_ints(sequence, {1, static_cast<int64_t>(sequence.size())})}));
    const int64_t next = sample_next_token(row, o, static_cast<uint64_t>(step));
    out.push_back(next);
    sequence.push_back(next);
    if (o.eos_id && next == *o.eos_id) break;
    if (static_cast<int64_t>(sequence.size()) >= model.config().max_position_embeddings) break;
    if (o.use_cache && step + 1 < o.max_new_tokens)
      row = last_logits(model.logits({Tensor::from_ints({next}, {1, 1}), {}, {}, &cache}));
  }
  model.train(was_training);
  return out;
}

}  // namespace shardlab::models
