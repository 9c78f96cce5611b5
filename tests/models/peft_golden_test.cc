// Parity with Hugging Face PEFT: tools/make_peft_golden.py put PEFT's LoRA (random A and B, r 4,
// alpha 12, on q/v/o/gate/down) on transformers' Llama loaded from tests/golden/llama_gqa_untied
// and saved the adapter with PEFT's save_pretrained. Loaded here with load_peft_adapter, the
// logits, loss and LoRA gradients must match PyTorch's, and merging must give PEFT's
// merge_and_unload weights. Tolerance: tests/tolerances.h ("attention", f32), as the Llama goldens.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "autograd/functions.h"
#include "core/safetensors.h"
#include "models/llama_io.h"
#include "models/peft_adapter.h"
#include "tests/tolerances.h"

namespace shardlab::models {
namespace {

namespace fs = std::filesystem;

const fs::path kGolden = fs::path(SHARDLAB_SOURCE_DIR) / "tests" / "golden";

// Largest |got - want| / (atol + rtol |want|); <= 1 means within tolerance.
double worst_ratio(const Tensor& got, const Tensor& want, testing::Tolerance tol) {
  EXPECT_EQ(got.shape(), want.shape());
  std::vector<double> g = got.to_double_vector(), w = want.to_double_vector();
  double worst = 0;
  for (size_t i = 0; i < g.size() && i < w.size(); ++i)
    worst = std::max(worst, std::abs(g[i] - w[i]) / (tol.atol + tol.rtol * std::abs(w[i])));
  return worst;
}

class PeftGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = load_llama((kGolden / "llama_gqa_untied").string());
    expected_ = std::make_unique<SafetensorsFile>(SafetensorsFile::open((kGolden / "peft_lora_gqa" / "expected.safetensors").string()));
    ASSERT_EQ(expected_->metadata().at("magic"), "shardlab-peft-golden");
    ASSERT_EQ(expected_->metadata().at("format_version"), "1");
  }
  std::unique_ptr<LlamaForCausalLM> model_;
  std::unique_ptr<SafetensorsFile> expected_;
  const testing::Tolerance tol_ = testing::tolerance("attention", DType::f32);
};

TEST_F(PeftGolden, AdapterConfigReadsAsPeftWroteIt) {
  const nn::LoraSettings s = read_peft_config((kGolden / "peft_lora_gqa").string());
  EXPECT_EQ(s.r, 4);
  EXPECT_DOUBLE_EQ(s.alpha, 12.0);
  EXPECT_DOUBLE_EQ(s.dropout, 0.1);
  std::vector<std::string> targets = s.target_modules;
  std::sort(targets.begin(), targets.end());
  EXPECT_EQ(targets, (std::vector<std::string>{"down_proj", "gate_proj", "o_proj", "q_proj", "v_proj"}));
  EXPECT_FALSE(s.target_linear);
}

TEST_F(PeftGolden, LogitsLossAndLoraGradientsMatchPeft) {
  Tensor ids = expected_->get("input_ids"), labels = expected_->get("labels");
  model_->eval();  // the golden ran in eval mode: lora_dropout off
  const Tensor base_logits = model_->logits({ids});
  const std::vector<std::string> wrapped = load_peft_adapter(*model_, (kGolden / "peft_lora_gqa").string());
  EXPECT_EQ(wrapped.size(), 2u * 5u);
  const Tensor logits = model_->logits({ids});
  const double logits_worst = worst_ratio(logits, expected_->get("logits"), tol_);
  EXPECT_LE(logits_worst, 1.0);
  // The adapter must matter, or matching logits would prove nothing about it.
  EXPECT_GT(worst_ratio(base_logits, expected_->get("logits"), tol_), 100.0);

  auto [loss_sum, count] = model_->loss_sum({ids}, labels);
  Tensor loss = loss_sum * (1.0 / static_cast<double>(count));
  const double want_loss = expected_->get("loss").item();
  EXPECT_NEAR(loss.item(), want_loss, tol_.atol + tol_.rtol * want_loss);
  backward(loss);
  int adapters = 0;
  double grads_worst = 0;
  for (auto& [name, t] : model_->named_parameters()) {
    const bool adapter = name.find(".lora_") != std::string::npos;
    ASSERT_EQ(t.grad().defined(), adapter) << name;
    if (!adapter) continue;
    const std::string key = "grad." + peft_tensor_name(name.substr(0, name.find(".lora_")), name.substr(name.find(".lora_") + 1));
    ASSERT_TRUE(expected_->contains(key)) << key;
    const double r = worst_ratio(t.grad(), expected_->get(key), tol_);
    EXPECT_LE(r, 1.0) << name;
    grads_worst = std::max(grads_worst, r);
    ++adapters;
  }
  EXPECT_EQ(adapters, 20);
  std::printf("peft_lora_gqa: worst error / tolerance: logits %.3f, lora gradients %.3f\n", logits_worst, grads_worst);
}

TEST_F(PeftGolden, MergedWeightsMatchMergeAndUnload) {
  load_peft_adapter(*model_, (kGolden / "peft_lora_gqa").string());
  EXPECT_EQ(nn::merge_lora(*model_).size(), 10u);
  int merged = 0;
  for (auto& [name, t] : model_->named_parameters()) {
    if (!expected_->contains("merged." + name)) continue;
    EXPECT_LE(worst_ratio(t, expected_->get("merged." + name), testing::tolerance("matmul", DType::f32)), 1.0) << name;
    ++merged;
  }
  EXPECT_EQ(merged, 10);
  model_->eval();
  EXPECT_LE(worst_ratio(model_->logits({expected_->get("input_ids")}), expected_->get("logits"), tol_), 1.0);
}

}  // namespace
}  // namespace shardlab::models
