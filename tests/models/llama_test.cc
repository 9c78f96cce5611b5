// The Llama model: Hugging Face parameter names and counts, tied embeddings, causality, packed
// sequences equal to separate runs, and a tiny model that learns a fixed sequence.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "models/llama.h"
#include "nn/optimizer.h"
#include "tests/tolerances.h"

namespace shardlab::models {
namespace {

using ::testing::HasSubstr;

LlamaConfig tiny(bool tied = false) {
  LlamaConfig c;
  c.vocab_size = 50;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.tie_word_embeddings = tied;
  c.initializer_range = 0.2;  // large enough that the layers matter in the tests below
  return c;
}

Tensor ids(std::vector<int64_t> v, int64_t batch) {
  return Tensor::from_ints(v, {batch, static_cast<int64_t>(v.size()) / batch});
}

TEST(Llama, ParameterNamesAndCountFollowHuggingFace) {
  LlamaForCausalLM m(tiny(), 1);
  std::vector<std::string> names;
  for (auto& [n, t] : m.named_parameters()) names.push_back(n);
  EXPECT_EQ(names.front(), "model.embed_tokens.weight");
  EXPECT_THAT(names, ::testing::Contains("model.layers.1.self_attn.k_proj.weight"));
  EXPECT_THAT(names, ::testing::Contains("model.layers.0.mlp.down_proj.weight"));
  EXPECT_THAT(names, ::testing::Contains("model.layers.0.post_attention_layernorm.weight"));
  EXPECT_EQ(names[names.size() - 2], "model.norm.weight");
  EXPECT_EQ(names.back(), "lm_head.weight");
  EXPECT_EQ(names.size(), 1u + 2 * 9 + 1 + 1);
  EXPECT_EQ(m.num_parameters(), tiny().num_parameters());
  // k_proj is (Hkv * D, C) = (8, 16) with grouped-query heads.
  for (auto& [n, t] : m.named_parameters()) {
    if (n == "model.layers.0.self_attn.k_proj.weight") {
      EXPECT_EQ(t.shape(), (Shape{8, 16}));
    }
  }
}

TEST(Llama, TiedEmbeddingsHaveNoLmHead) {
  LlamaForCausalLM m(tiny(true), 1);
  for (auto& [n, t] : m.named_parameters()) EXPECT_NE(n, "lm_head.weight");
  EXPECT_EQ(m.num_parameters(), tiny(true).num_parameters());
  Tensor out = m.logits({ids({1, 2, 3}, 1)});
  EXPECT_EQ(out.shape(), (Shape{1, 3, 50}));
}

TEST(Llama, LogitsAtATokenDoNotDependOnLaterTokens) {
  LlamaForCausalLM m(tiny(), 2);
  std::vector<double> a = m.logits({ids({5, 6, 7, 8}, 1)}).to_double_vector();
  std::vector<double> b = m.logits({ids({5, 6, 9, 1}, 1)}).to_double_vector();
  const size_t v = 50;
  for (size_t i = 0; i < 2 * v; ++i) EXPECT_DOUBLE_EQ(a[i], b[i]) << i;  // positions 0 and 1 match
  bool later_differs = false;
  for (size_t i = 2 * v; i < 3 * v; ++i) later_differs |= a[i] != b[i];
  EXPECT_TRUE(later_differs);
}

TEST(Llama, PackedDocumentsMatchSeparateRuns) {
  LlamaForCausalLM m(tiny(), 3);
  LlamaInputs packed{ids({3, 4, 5, 10, 11}, 1), Tensor::from_ints({0, 1, 2, 0, 1}, {1, 5}),
                     Tensor::from_ints({0, 0, 0, 1, 1}, {1, 5})};
  std::vector<double> p = m.logits(packed).to_double_vector();
  std::vector<double> first = m.logits({ids({3, 4, 5}, 1)}).to_double_vector();
  std::vector<double> second = m.logits({ids({10, 11}, 1)}).to_double_vector();
  first.insert(first.end(), second.begin(), second.end());
  ASSERT_EQ(p.size(), first.size());
  const auto tol = testing::tolerance("attention", DType::f32);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(p[i], first[i], tol.atol + tol.rtol * std::abs(first[i])) << i;
}

TEST(Llama, LossSumShiftsLabelsAndCountsTargets) {
  LlamaForCausalLM m(tiny(), 4);
  Tensor input = ids({1, 2, 3, 4}, 1);
  Tensor labels = Tensor::from_ints({-100, 2, -100, 4}, {1, 4});
  auto [loss, count] = m.loss_sum({input}, labels);
  EXPECT_EQ(count, 2);
  // Independent check: log-softmax of logits at positions 0 and 2 against tokens 2 and 4.
  Tensor lp = log_softmax(m.logits({input}), -1);
  std::vector<double> v = lp.to_double_vector();
  const double expected = -(v[0 * 50 + 2] + v[2 * 50 + 4]);
  EXPECT_NEAR(loss.item(), expected, 1e-4);
}

TEST(Llama, LearnsAFixedSequence) {
  LlamaForCausalLM m(tiny(), 5);
  nn::AdamW opt(m.trainable_parameters(), 1e-2, 0.9, 0.999, 1e-8, 0.0);
  Tensor input = ids({1, 7, 3, 9, 4, 2, 8, 6}, 1);
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    auto [loss, count] = m.loss_sum({input}, input);
    Tensor mean_loss = loss * (1.0 / static_cast<double>(count));
    if (step == 0) first = mean_loss.item();
    last = mean_loss.item();
    opt.zero_grad();
    backward(mean_loss);
    opt.step();
  }
  EXPECT_GT(first, 3.0);  // about ln(50) = 3.9 at random init
  EXPECT_LT(last, 0.1);
}

TEST(Llama, RejectsSequencesLongerThanMaxPositions) {
  LlamaForCausalLM m(tiny(), 6);
  std::vector<int64_t> long_ids(65, 1);
  try {
    m.logits({ids(long_ids, 1)});
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("max_position_embeddings"));
  }
  LlamaConfig bad = tiny();
  bad.num_key_value_heads = 3;
  EXPECT_THROW(LlamaForCausalLM(bad, 1), Error);
}

}  // namespace
}  // namespace shardlab::models
