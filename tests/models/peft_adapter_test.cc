// PEFT adapter files: a save/load round trip on a tiny Llama, the adapter_config.json fields, the
// all-linear case, and every strict-load and config error naming its tensor or key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

#include "autograd/grad_mode.h"
#include "core/atomic_file.h"
#include "core/ops.h"
#include "core/safetensors.h"
#include "models/peft_adapter.h"
#include "models/llama.h"

namespace shardlab::models {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

LlamaConfig tiny_config() {
  LlamaConfig c;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 32;
  return c;
}

nn::LoraSettings qv_settings() {
  nn::LoraSettings s;
  s.r = 4;
  s.alpha = 8;
  s.dropout = 0.05;
  s.target_modules = {"q_proj", "v_proj"};
  s.seed = 3;
  return s;
}

class PeftAdapter : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("shardlab_peft_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir() const { return dir_.string(); }

  // A LoRA model whose B matrices are random, so that the adapter changes the logits.
  std::unique_ptr<LlamaForCausalLM> adapted(const nn::LoraSettings& s) {
    auto model = std::make_unique<LlamaForCausalLM>(tiny_config(), 1);
    nn::apply_lora(*model, s);
    NoGradGuard no_grad;
    uint64_t seed = 100;
    for (auto& [name, t] : model->named_parameters())
      if (name.find(".lora_B.") != std::string::npos) ops::copy_(t, Tensor::randn(t.shape(), seed++, t.dtype()));
    return model;
  }
  std::string error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  }
  // Rewrites one key of the saved adapter_config.json.
  void set_config_key(const std::string& key, json::Value value) {
    const std::string path = (dir_ / "adapter_config.json").string();
    json::Value cfg = json::parse_file(path);
    cfg.set(key, std::move(value));
    write_file_atomic(path, json::dump_pretty(cfg));
  }
  fs::path dir_;
};

TEST_F(PeftAdapter, SaveThenLoadGivesTheSameTensorsAndLogits) {
  auto model = adapted(qv_settings());
  save_peft_adapter(*model, qv_settings(), dir(), "models/tiny");
  SafetensorsFile file = SafetensorsFile::open((dir_ / "adapter_model.safetensors").string());
  std::vector<std::string> names = file.names();
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 8u);
  EXPECT_EQ(names[0], "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(file.info("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight").shape, (Shape{8, 4}));

  auto fresh = std::make_unique<LlamaForCausalLM>(tiny_config(), 1);  // the same base weights
  EXPECT_EQ(load_peft_adapter(*fresh, dir()), (std::vector<std::string>{
                                                  "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                                                  "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}));
  auto a = model->named_parameters(), b = fresh->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_EQ(a[i].second.to_double_vector(), b[i].second.to_double_vector()) << a[i].first;
    EXPECT_EQ(a[i].second.requires_grad(), b[i].second.requires_grad()) << a[i].first;
  }
  model->eval();
  fresh->eval();
  Tensor ids = Tensor::from_ints({1, 5, 9, 2, 30, 7}, {1, 6});
  EXPECT_EQ(model->logits({ids}).to_double_vector(), fresh->logits({ids}).to_double_vector());
}

TEST_F(PeftAdapter, ConfigHasPeftsFields) {
  auto model = adapted(qv_settings());
  save_peft_adapter(*model, qv_settings(), dir(), "models/tiny");
  const json::Value cfg = json::parse_file((dir_ / "adapter_config.json").string());
  EXPECT_EQ(cfg.at("peft_type").as_string(), "LORA");
  EXPECT_EQ(cfg.at("task_type").as_string(), "CAUSAL_LM");
  EXPECT_EQ(cfg.at("r").as_int(), 4);
  EXPECT_EQ(cfg.at("lora_alpha").as_int(), 8);
  EXPECT_DOUBLE_EQ(cfg.at("lora_dropout").as_double(), 0.05);
  EXPECT_EQ(cfg.at("bias").as_string(), "none");
  EXPECT_FALSE(cfg.at("fan_in_fan_out").as_bool());
  EXPECT_FALSE(cfg.at("use_dora").as_bool());
  EXPECT_EQ(cfg.at("base_model_name_or_path").as_string(), "models/tiny");
  ASSERT_EQ(cfg.at("target_modules").size(), 2u);
  EXPECT_EQ(cfg.at("target_modules").at(size_t{0}).as_string(), "q_proj");
  const nn::LoraSettings back = read_peft_config(dir(), 3);
  EXPECT_EQ(back.r, 4);
  EXPECT_DOUBLE_EQ(back.alpha, 8.0);
  EXPECT_DOUBLE_EQ(back.dropout, 0.05);
  EXPECT_EQ(back.target_modules, qv_settings().target_modules);
  EXPECT_EQ(back.seed, 3u);
}

TEST_F(PeftAdapter, TargetLinearIsSavedAsTheWrappedNames) {
  nn::LoraSettings s = qv_settings();
  s.target_modules.clear();
  s.target_linear = true;
  auto model = adapted(s);
  save_peft_adapter(*model, s, dir());
  const nn::LoraSettings back = read_peft_config(dir());
  EXPECT_EQ(back.target_modules, (std::vector<std::string>{"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj",
                                                           "up_proj", "v_proj"}));
  auto fresh = std::make_unique<LlamaForCausalLM>(tiny_config(), 1);
  EXPECT_EQ(load_peft_adapter(*fresh, dir()).size(), 14u);
  // PEFT's "all-linear" string reads as target_linear.
  set_config_key("target_modules", "all-linear");
  EXPECT_TRUE(read_peft_config(dir()).target_linear);
}

TEST_F(PeftAdapter, StrictLoadNamesTheTensor) {
  auto model = adapted(qv_settings());
  save_peft_adapter(*model, qv_settings(), dir());
  const std::string file = (dir_ / "adapter_model.safetensors").string();
  SafetensorsFile saved = SafetensorsFile::open(file);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& n : saved.names()) tensors.emplace_back(n, saved.get(n));

  auto without = tensors;
  std::erase_if(without, [](auto& p) { return p.first.find("layers.1.self_attn.v_proj.lora_A") != std::string::npos; });
  save_safetensors(file, without);
  auto m1 = std::make_unique<LlamaForCausalLM>(tiny_config(), 1);
  EXPECT_THAT(error_of([&] { load_peft_adapter(*m1, dir()); }),
              HasSubstr("missing tensor 'base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight'"));

  auto extra = tensors;
  extra.emplace_back("base_model.model.model.layers.0.mlp.up_proj.lora_A.weight", Tensor::zeros({4, 16}));
  save_safetensors(file, extra);
  auto m2 = std::make_unique<LlamaForCausalLM>(tiny_config(), 1);
  EXPECT_THAT(error_of([&] { load_peft_adapter(*m2, dir()); }),
              HasSubstr("unexpected tensor 'base_model.model.model.layers.0.mlp.up_proj.lora_A.weight'"));

  auto reshaped = tensors;
  reshaped[0].second = Tensor::zeros({2, 2});
  save_safetensors(file, reshaped);
  auto m3 = std::make_unique<LlamaForCausalLM>(tiny_config(), 1);
  EXPECT_THAT(error_of([&] { load_peft_adapter(*m3, dir()); }),
              HasSubstr("tensor '" + tensors[0].first + "' has shape (2, 2) but the model's is (4, 16)"));
}

TEST_F(PeftAdapter, UnsupportedConfigsNameTheKey) {
  auto model = adapted(qv_settings());
  save_peft_adapter(*model, qv_settings(), dir());
  const auto config_error = [&](const std::string& key, json::Value value) {
    save_peft_adapter(*model, qv_settings(), dir());
    set_config_key(key, std::move(value));
    auto fresh = std::make_unique<LlamaForCausalLM>(tiny_config(), 1);
    return error_of([&] { load_peft_adapter(*fresh, dir()); });
  };
  EXPECT_THAT(config_error("peft_type", "IA3"), HasSubstr("peft_type"));
  EXPECT_THAT(config_error("use_dora", true), HasSubstr("use_dora"));
  EXPECT_THAT(config_error("use_rslora", true), HasSubstr("use_rslora"));
  EXPECT_THAT(config_error("bias", "all"), HasSubstr("bias"));
  EXPECT_THAT(config_error("fan_in_fan_out", true), HasSubstr("fan_in_fan_out"));
  EXPECT_THAT(config_error("target_modules", ".*proj"), HasSubstr("regex"));
  EXPECT_THAT(config_error("r", 0), HasSubstr("r"));
  json::Value unknown = json::Value::array();
  unknown.push_back("w_proj");
  EXPECT_THAT(config_error("target_modules", unknown),
              HasSubstr("adapter_config.json: LoRA: target module 'w_proj' matches no module"));
  EXPECT_THAT(error_of([&] { read_peft_config((dir_ / "nowhere").string()); }), HasSubstr("has no adapter_config.json"));
}

}  // namespace
}  // namespace shardlab::models
