// Text generation with a KV cache: the prompt is run once, then one token per step attends to the
// cached keys and values. Greedy, or sampling with temperature, top-k and top-p, seeded.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "models/llama.h"

namespace shardlab::models {

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  bool greedy = true;
  double temperature = 1.0;
  int64_t top_k = 0;      // 0: no top-k cut
  double top_p = 1.0;     // 1: no nucleus cut
  uint64_t seed = 0;      // sampling draws: token i of the output uses (seed, i)
  std::optional<int64_t> eos_id;  // stop after emitting it
  bool use_cache = true;  // false re-runs the whole sequence each step (for testing the cache)
};

// Returns the new tokens (not the prompt). Runs under no-grad in eval mode.
std::vector<int64_t> generate(LlamaForCausalLM& model, const std::vector<int64_t>& prompt, const GenerateOptions& options);

// Picks the next token from one row of logits (V,) as `options` says; `draw` indexes the seeded
// random stream.
int64_t sample_next_token(const std::vector<double>& logits, const GenerateOptions& options, uint64_t draw);

}  // namespace shardlab::models
