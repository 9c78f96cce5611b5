// The adapter keys of a train config (adapter, lora_*, load_in_4bit, bnb_4bit_*): Axolotl's LoRA
// and QLoRA examples parse and round-trip through the resolved YAML, and every bad value or
// combination is one line naming the key.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "tests/tools/config_test_util.h"
#include "tools/config/train_config.h"

namespace shardlab::config {
namespace {

// Four lines of a valid config; extra keys appended to it start on line 5.
const std::string kBase = "base_model: m\ndatasets:\n  - path: d.jsonl\n    type: alpaca\n";
const std::string kLora = kBase + "adapter: lora\nlora_target_modules: [q_proj]\n";  // lines 5-6


TEST(AdapterConfig, LoraExampleParses) {
  const TrainConfig c = load_train_config(config_path("lora.yaml"));
  EXPECT_EQ(c.adapter.kind, AdapterKind::lora);
  EXPECT_EQ(c.adapter.lora_r, 16);
  EXPECT_EQ(c.adapter.lora_alpha, 32.0);
  EXPECT_EQ(c.adapter.lora_dropout, 0.05);
  EXPECT_EQ(c.adapter.lora_target_modules, (std::vector<std::string>{"q_proj", "v_proj", "down_proj"}));
  EXPECT_FALSE(c.adapter.lora_target_linear);
  EXPECT_FALSE(c.adapter.load_in_4bit);
}

TEST(AdapterConfig, QloraExampleParses) {
  const TrainConfig c = load_train_config(config_path("qlora.yaml"));
  EXPECT_EQ(c.adapter.kind, AdapterKind::qlora);
  EXPECT_TRUE(c.adapter.load_in_4bit);
  EXPECT_EQ(c.adapter.bnb_4bit_compute_dtype, ComputeDType::bfloat16);
  EXPECT_EQ(c.adapter.lora_r, 32);
  EXPECT_TRUE(c.adapter.lora_target_linear);
  EXPECT_TRUE(c.adapter.lora_target_modules.empty());
  EXPECT_TRUE(c.adapter.lora_model_dir.empty());
}

TEST(AdapterConfig, DefaultsWithoutAnAdapterAndEmptyValuesMeanNotSet) {
  const TrainConfig c = parse_train_config(kBase + "adapter:\nlora_r: ''\nlora_target_modules: []\nload_in_4bit: false\n"
                                                   "lora_target_linear: false\n", "inline.yaml");
  EXPECT_EQ(c.adapter, AdapterConfig{});
  EXPECT_EQ(to_string(c.adapter.kind), "none");
}

TEST(AdapterConfig, ResolvedYamlRoundTrips) {
  for (const char* name : {"lora.yaml", "qlora.yaml"}) {
    SCOPED_TRACE(name);
    const TrainConfig c = load_train_config(config_path(name));
    const std::string yaml = resolved_config_yaml(c, config_path(name));
    EXPECT_EQ(parse_train_config(yaml, "resolved.yaml"), c) << yaml;
    EXPECT_NE(yaml.find("adapter: " + std::string(to_string(c.adapter.kind))), std::string::npos) << yaml;
  }
  const TrainConfig plain = parse_train_config(kBase, "inline.yaml");
  EXPECT_EQ(resolved_config_yaml(plain).find("lora"), std::string::npos);
  const TrainConfig continued = parse_train_config(kBase + "adapter: lora\nlora_model_dir: out/adapter\n", "inline.yaml");
  EXPECT_EQ(continued.adapter.lora_model_dir, "out/adapter");
  EXPECT_EQ(parse_train_config(resolved_config_yaml(continued), "resolved.yaml"), continued);
}

TEST(AdapterConfig, BadValuesNameTheKey) {
  EXPECT_CONTAINS(text_error(kBase + "adapter: lorax\n"), "inline.yaml:5:10: adapter must be one of lora, qlora; got 'lorax'");
  EXPECT_CONTAINS(text_error(kBase + "adapter: ia3\n"), "adapter 'ia3' is not supported yet");
  EXPECT_CONTAINS(text_error(kLora + "lora_r: 0\n"), "inline.yaml:7:9: lora_r must be a positive integer, got '0'");
  EXPECT_CONTAINS(text_error(kLora + "lora_r: 8.5\n"), "lora_r must be a positive integer, got '8.5'");
  EXPECT_CONTAINS(text_error(kLora + "lora_alpha: -2\n"), "lora_alpha must be > 0, got '-2'");
  EXPECT_CONTAINS(text_error(kLora + "lora_alpha: big\n"), "lora_alpha must be a number, got 'big'");
  EXPECT_CONTAINS(text_error(kLora + "lora_dropout: 1\n"), "lora_dropout must be in [0, 1), got '1'");
  EXPECT_CONTAINS(text_error(kBase + "adapter: lora\nlora_target_modules: q_proj\n"),
                  "inline.yaml:6:22: lora_target_modules must be a list of module names (e.g. [q_proj, v_proj]), got 'q_proj'");
  EXPECT_CONTAINS(text_error(kBase + "adapter: lora\nlora_target_modules: [q_proj, q_proj]\n"),
                  "lora_target_modules names 'q_proj' twice");
  EXPECT_CONTAINS(text_error(kBase + "adapter: lora\nlora_target_modules: [[q_proj]]\n"),
                  "lora_target_modules[0] must be a module name, got a list");
  EXPECT_CONTAINS(text_error(kLora + "lora_target_linear: yes please\n"), "lora_target_linear must be true or false");
  EXPECT_CONTAINS(text_error(kLora + "lora_fan_in_fan_out: true\n"), "'lora_fan_in_fan_out' is not supported yet");
  EXPECT_CONTAINS(text_error(kLora + "peft_use_rslora: true\n"), "'peft_use_rslora' is not supported yet");
}

TEST(AdapterConfig, AdapterWithoutTargetsIsAnError) {
  EXPECT_CONTAINS(text_error(kBase + "adapter: lora\n"),
                  "inline.yaml:5:10: adapter lora needs targets: lora_target_modules (e.g. [q_proj, v_proj]) or "
                  "lora_target_linear: true");
  EXPECT_CONTAINS(text_error(kBase + "adapter: lora\nlora_target_linear: false\nlora_target_modules: []\n"),
                  "adapter lora needs targets");
}

TEST(AdapterConfig, LoraKeysWithoutAnAdapterAreErrors) {
  for (const char* line : {"lora_r: 8\n", "lora_alpha: 16\n", "lora_dropout: 0.1\n", "lora_target_modules: [q_proj]\n",
                           "lora_model_dir: out\n", "lora_target_linear: true\n"}) {
    const std::string key = std::string(line).substr(0, std::string(line).find(':'));
    EXPECT_CONTAINS(text_error(kBase + line), "inline.yaml:5:1: " + key + " needs an adapter: set adapter: lora");
  }
}

TEST(AdapterConfig, QloraNeedsLoadIn4bitAndFourBitNeedsQlora) {
  EXPECT_CONTAINS(text_error(kBase + "adapter: qlora\nlora_target_linear: true\n"),
                  "inline.yaml:5:10: adapter qlora needs load_in_4bit: true");
  EXPECT_CONTAINS(text_error(kBase + "adapter: qlora\nlora_target_linear: true\nload_in_4bit: false\n"),
                  "adapter qlora needs load_in_4bit: true");
  EXPECT_CONTAINS(text_error(kLora + "load_in_4bit: true\n"), "inline.yaml:7:1: load_in_4bit: true needs adapter: qlora");
  EXPECT_CONTAINS(text_error(kBase + "load_in_4bit: true\n"), "load_in_4bit: true needs adapter: qlora");
}

TEST(AdapterConfig, FourBitSettingsAcceptOnlyWhatExists) {
  const std::string q = kBase + "adapter: qlora\nlora_target_linear: true\nload_in_4bit: true\n";  // lines 5-7
  EXPECT_CONTAINS(text_error(q + "bnb_4bit_quant_type: fp4\n"), "inline.yaml:8:22: bnb_4bit_quant_type 'fp4' is not supported yet");
  EXPECT_CONTAINS(text_error(q + "bnb_4bit_quant_type: int4\n"), "bnb_4bit_quant_type must be one of nf4; got 'int4'");
  EXPECT_CONTAINS(text_error(q + "bnb_4bit_use_double_quant: false\n"), "bnb_4bit_use_double_quant must be true");
  EXPECT_CONTAINS(text_error(q + "bnb_4bit_compute_dtype: int8\n"),
                  "bnb_4bit_compute_dtype must be one of auto, float32, bfloat16, float16, fp32, bf16, fp16; got 'int8'");
  EXPECT_EQ(parse_train_config(q + "bnb_4bit_compute_dtype: fp16\n", "inline.yaml").adapter.bnb_4bit_compute_dtype,
            ComputeDType::float16);
  for (const char* line : {"bnb_4bit_quant_type: nf4\n", "bnb_4bit_use_double_quant: true\n", "bnb_4bit_compute_dtype: bfloat16\n"}) {
    const std::string key = std::string(line).substr(0, std::string(line).find(':'));
    EXPECT_CONTAINS(text_error(kLora + line), "inline.yaml:7:1: " + key + " needs load_in_4bit: true");
  }
}

}  // namespace
}  // namespace shardlab::config
