// Generation: KV-cached decoding gives the same tokens as recomputing the whole sequence, sampling
// is seeded and respects top-k/top-p, and a trained model continues its training sequence.
#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "models/generate.h"
#include "nn/optimizer.h"

namespace shardlab::models {
namespace {

LlamaConfig tiny() {
  LlamaConfig c;
  c.vocab_size = 30;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.initializer_range = 0.3;
  return c;
}

TEST(Generate, KvCacheMatchesFullRecomputation) {
  LlamaForCausalLM m(tiny(), 3);
  GenerateOptions o;
  o.max_new_tokens = 12;
  std::vector<int64_t> cached = generate(m, {1, 5, 9}, o);
  o.use_cache = false;
  EXPECT_EQ(generate(m, {1, 5, 9}, o), cached);
  EXPECT_EQ(cached.size(), 12u);
}

TEST(Generate, SamplingIsSeededAndTopKOneIsGreedy) {
  LlamaForCausalLM m(tiny(), 4);
  GenerateOptions o;
  o.max_new_tokens = 10;
  std::vector<int64_t> greedy = generate(m, {2, 3}, o);
  o.greedy = false;
  o.top_k = 1;
  EXPECT_EQ(generate(m, {2, 3}, o), greedy);
  o.top_k = 0;
  o.temperature = 2.0;
  o.seed = 7;
  std::vector<int64_t> a = generate(m, {2, 3}, o), b = generate(m, {2, 3}, o);
  EXPECT_EQ(a, b);
  o.seed = 8;
  EXPECT_NE(generate(m, {2, 3}, o), a);
}

TEST(SampleNextToken, TopPKeepsTheSmallestSufficientPrefix) {
  // Probabilities 0.5, 0.3, 0.2 (logits are their logs): top_p 0.6 keeps ids {0, 1} only.
  std::vector<double> logits = {std::log(0.5), std::log(0.3), std::log(0.2)};
  GenerateOptions o;
  o.greedy = false;
  o.top_p = 0.6;
  int counts[3] = {0, 0, 0};
  for (uint64_t draw = 0; draw < 4000; ++draw) counts[sample_next_token(logits, o, draw)]++;
  EXPECT_EQ(counts[2], 0);
  EXPECT_NEAR(counts[0] / 4000.0, 0.5 / 0.8, 0.03);
  o.top_p = 1.0;
  o.top_k = 2;
  counts[0] = counts[1] = counts[2] = 0;
  for (uint64_t draw = 0; draw < 4000; ++draw) counts[sample_next_token(logits, o, draw)]++;
  EXPECT_EQ(counts[2], 0);
}

TEST(Generate, StopsAtEosAndContinuesALearnedSequence) {
  LlamaForCausalLM m(tiny(), 5);
  std::vector<int64_t> seq = {1, 4, 7, 10, 13, 16, 19, 22, 25, 2};
  nn::AdamW opt(m.trainable_parameters(), 1e-2, 0.9, 0.999, 1e-8, 0.0);
  Tensor ids = Tensor::from_ints(seq, {1, 10});
  for (int step = 0; step < 80; ++step) {
    auto [loss, count] = m.loss_sum({ids}, ids);
    opt.zero_grad();
    backward(loss * (1.0 / count));
    opt.step();
  }
  GenerateOptions o;
  o.max_new_tokens = 20;
  o.eos_id = 2;
  std::vector<int64_t> out = generate(m, {1, 4, 7}, o);
  EXPECT_EQ(out, (std::vector<int64_t>{10, 13, 16, 19, 22, 25, 2}));
  EXPECT_TRUE(m.is_training());  // restored after generation
}

}  // namespace
}  // namespace shardlab::models
