// The train config: every key parsed from crafted files, the defaults, resolve_auto(), and the
// resolved YAML loading back to an equal config.
#include <gtest/gtest.h>

#include <string>

#include "tools/config/train_config.h"

namespace shardlab::config {
namespace {

std::string config_path(const std::string& name) {
  return std::string(SHARDLAB_SOURCE_DIR) + "/tests/data/configs/" + name;
}

TEST(TrainConfig, FullFileParsesEveryFineTuningKey) {
  const TrainConfig c = load_train_config(config_path("full.yaml"));
  EXPECT_EQ(c.base_model, "/models/tiny-llama");
  EXPECT_FALSE(c.model_config.has_value());
  EXPECT_EQ(c.tokenizer, "/models/tiny-llama/tokenizer.json");
  ASSERT_EQ(c.datasets.size(), 3u);

  const DatasetConfig& alpaca = c.datasets[0];
  EXPECT_EQ(alpaca.path, "data/alpaca.jsonl");
  EXPECT_EQ(alpaca.type, DatasetType::alpaca);
  EXPECT_EQ(alpaca.field_instruction, "question");
  EXPECT_EQ(alpaca.field_input, "context");
  EXPECT_EQ(alpaca.field_output, "answer");
  EXPECT_EQ(alpaca.system_prompt, "You are terse.");

  const DatasetConfig& completion = c.datasets[1];
  EXPECT_EQ(completion.path, "data/books.jsonl");
  EXPECT_EQ(completion.type, DatasetType::completion);
  EXPECT_EQ(completion.field, "body");

  const DatasetConfig& custom = c.datasets[2];
  EXPECT_EQ(custom.type, DatasetType::custom);
  EXPECT_EQ(custom.field_instruction, "q");
  EXPECT_EQ(custom.field_input, "ctx");
  EXPECT_EQ(custom.field_output, "a");
  EXPECT_EQ(custom.field_system, "sys");
  EXPECT_EQ(custom.system_prompt, "Be kind.");
  EXPECT_EQ(custom.format, "[INST] {instruction} {input} [/INST]");
  EXPECT_EQ(custom.no_input_format, "[INST] {instruction} [/INST]");
  EXPECT_EQ(custom.system_format, "<<SYS>>{system}<</SYS>>");

  EXPECT_EQ(c.val_set_size, 0.05);
  EXPECT_EQ(c.sequence_len, 512);
  EXPECT_TRUE(c.sample_packing);
  EXPECT_TRUE(c.pad_to_sequence_len);
  EXPECT_TRUE(c.train_on_inputs);
  EXPECT_EQ(c.micro_batch_size, 4);
  EXPECT_EQ(c.gradient_accumulation_steps, 8);
  EXPECT_EQ(c.num_epochs, 3);
  EXPECT_EQ(c.max_steps, 1000);
  EXPECT_EQ(c.optimizer, OptimizerKind::adamw);  // adamw_torch is the same optimizer
  EXPECT_EQ(c.learning_rate, 3e-4);
  EXPECT_EQ(c.weight_decay, 0.1);
  EXPECT_EQ(c.adam_beta1, 0.8);
  EXPECT_EQ(c.adam_beta2, 0.95);
  EXPECT_EQ(c.adam_epsilon, 1e-6);
  EXPECT_EQ(c.lr_scheduler, LrSchedulerKind::cosine);
  EXPECT_EQ(c.warmup_steps, 0);
  EXPECT_EQ(c.warmup_ratio, 0.03);
  EXPECT_EQ(c.max_grad_norm, 0.5);
  EXPECT_EQ(c.seed, 7);
  EXPECT_EQ(c.output_dir, "out/run1");
  EXPECT_EQ(c.logging_steps, 10);
  EXPECT_EQ(c.eval_steps, 50);
  EXPECT_EQ(c.saves_per_epoch, 2);
  EXPECT_EQ(c.save_steps, 0);
  EXPECT_EQ(c.resume_from_checkpoint, "out/run0/checkpoint-100");
  EXPECT_EQ(c.bf16, Toggle::on);
  EXPECT_EQ(c.fp16, Toggle::off);
  EXPECT_EQ(c.tf32, Toggle::automatic);
  EXPECT_TRUE(c.gradient_checkpointing);
  EXPECT_TRUE(c.flash_attention);
  EXPECT_EQ(c.device, DeviceKind::cuda);
  ASSERT_TRUE(c.generate_after_training.has_value());
  EXPECT_EQ(c.generate_after_training->prompt, "Once upon a time");
  EXPECT_EQ(c.generate_after_training->max_new_tokens, 32);
}

TEST(TrainConfig, ScratchFileParsesModelConfigAndTheRemainingKeys) {
  const TrainConfig c = load_train_config(config_path("scratch.yaml"));
  EXPECT_TRUE(c.base_model.empty());
  ASSERT_TRUE(c.model_config.has_value());
  const ModelConfigFields& m = *c.model_config;
  EXPECT_EQ(m.vocab_size, 259);
  EXPECT_EQ(m.hidden_size, 64);
  EXPECT_EQ(m.intermediate_size, 172);
  EXPECT_EQ(m.num_hidden_layers, 2);
  EXPECT_EQ(m.num_attention_heads, 4);
  EXPECT_EQ(m.num_key_value_heads, 2);
  EXPECT_EQ(m.max_position_embeddings, 256);
  EXPECT_EQ(m.rope_theta, 500000.0);
  EXPECT_EQ(m.rms_norm_eps, 1e-5);
  EXPECT_EQ(m.tie_word_embeddings, true);
  EXPECT_EQ(c.tokenizer, "byte");

  ASSERT_EQ(c.datasets.size(), 1u);
  const DatasetConfig& d = c.datasets[0];
  EXPECT_EQ(d.type, DatasetType::custom);  // a map under type: is a custom format
  EXPECT_EQ(d.field_instruction, "prompt");
  EXPECT_EQ(d.field_input, "input");  // not given: the default column
  EXPECT_EQ(d.field_output, "completion");
  EXPECT_EQ(d.format, "Q: {instruction}\nA: ");
  EXPECT_EQ(d.no_input_format, "");
  EXPECT_EQ(d.system_format, "{system}");

  EXPECT_EQ(c.val_set_size, 10.0);  // a count of examples
  EXPECT_EQ(c.num_epochs, 0);
  EXPECT_EQ(c.max_steps, 20);
  EXPECT_EQ(c.optimizer, OptimizerKind::sgd);
  EXPECT_EQ(c.learning_rate, 0.01);
  EXPECT_EQ(c.lr_scheduler, LrSchedulerKind::constant);
  EXPECT_EQ(c.warmup_steps, 5);
  EXPECT_EQ(c.save_steps, 100);
  EXPECT_EQ(c.fp16, Toggle::on);
  EXPECT_EQ(c.bf16, Toggle::automatic);
  EXPECT_EQ(c.device, DeviceKind::cpu);
  EXPECT_FALSE(c.generate_after_training.has_value());
}

TEST(TrainConfig, MinimalFileTakesEveryDefault) {
  const TrainConfig c = load_train_config(config_path("minimal.yaml"));
  TrainConfig want;
  want.base_model = "models/tiny";
  want.tokenizer = "models/tiny";  // the base model's tokenizer
  want.datasets.push_back({});
  want.datasets[0].path = "data/alpaca.jsonl";
  EXPECT_EQ(c, want);

  // The defaults themselves, spelled out (Hugging Face TrainingArguments' where they overlap).
  EXPECT_EQ(c.datasets[0].type, DatasetType::alpaca);
  EXPECT_EQ(c.datasets[0].field_instruction, "instruction");
  EXPECT_EQ(c.datasets[0].field_input, "input");
  EXPECT_EQ(c.datasets[0].field_output, "output");
  EXPECT_EQ(c.datasets[0].field, "text");
  EXPECT_EQ(c.val_set_size, 0.0);
  EXPECT_EQ(c.sequence_len, 2048);
  EXPECT_FALSE(c.sample_packing);
  EXPECT_FALSE(c.pad_to_sequence_len);
  EXPECT_FALSE(c.train_on_inputs);
  EXPECT_EQ(c.micro_batch_size, 1);
  EXPECT_EQ(c.gradient_accumulation_steps, 1);
  EXPECT_EQ(c.num_epochs, 1);
  EXPECT_EQ(c.max_steps, 0);
  EXPECT_EQ(c.optimizer, OptimizerKind::adamw);
  EXPECT_EQ(c.learning_rate, 5e-5);
  EXPECT_EQ(c.weight_decay, 0.0);
  EXPECT_EQ(c.adam_beta1, 0.9);
  EXPECT_EQ(c.adam_beta2, 0.999);
  EXPECT_EQ(c.adam_epsilon, 1e-8);
  EXPECT_EQ(c.lr_scheduler, LrSchedulerKind::linear);
  EXPECT_EQ(c.warmup_steps, 0);
  EXPECT_EQ(c.warmup_ratio, 0.0);
  EXPECT_EQ(c.max_grad_norm, 1.0);
  EXPECT_EQ(c.seed, 42);
  EXPECT_EQ(c.output_dir, "./model-out");
  EXPECT_EQ(c.logging_steps, 1);
  EXPECT_EQ(c.eval_steps, 0);
  EXPECT_EQ(c.saves_per_epoch, 0);
  EXPECT_EQ(c.save_steps, 0);
  EXPECT_EQ(c.resume_from_checkpoint, "");
  EXPECT_EQ(c.bf16, Toggle::off);
  EXPECT_EQ(c.fp16, Toggle::off);
  EXPECT_EQ(c.tf32, Toggle::off);
  EXPECT_FALSE(c.gradient_checkpointing);
  EXPECT_FALSE(c.flash_attention);
  EXPECT_EQ(c.device, DeviceKind::automatic);
  EXPECT_FALSE(c.generate_after_training.has_value());
}

TEST(TrainConfig, AxolotlStyleEmptyAndFalseFeatureKeysAreAccepted) {
  const TrainConfig c = load_train_config(config_path("axolotl_style.yaml"));
  EXPECT_EQ(c.base_model, "models/open_llama_3b");
  EXPECT_EQ(c.val_set_size, 0.02);
  EXPECT_EQ(c.sequence_len, 1024);
  EXPECT_EQ(c.learning_rate, 0.000003);
  EXPECT_EQ(c.num_epochs, 4);
  EXPECT_EQ(c.warmup_steps, 20);
  EXPECT_EQ(c.saves_per_epoch, 1);
  EXPECT_EQ(c.resume_from_checkpoint, "");  // `resume_from_checkpoint:` empty: the default
}

TEST(TrainConfig, SwitchesAcceptAnyCaseAndNumbersTheirUsualSpellings) {
  const TrainConfig c = parse_train_config(
      "base_model: m\ndatasets: [{path: d.jsonl, type: alpaca}]\n"
      "sample_packing: True\nbf16: FALSE\nfp16: auto\nlearning_rate: +.5e-3\nseed: 0\n",
      "inline.yaml");
  EXPECT_TRUE(c.sample_packing);
  EXPECT_EQ(c.bf16, Toggle::off);
  EXPECT_EQ(c.fp16, Toggle::automatic);
  EXPECT_EQ(c.learning_rate, 0.5e-3);
  EXPECT_EQ(c.seed, 0);
}

TEST(TrainConfig, ResolvedYamlRoundTripsForEveryCraftedFile) {
  for (const char* name : {"full.yaml", "scratch.yaml", "minimal.yaml", "axolotl_style.yaml"}) {
    SCOPED_TRACE(name);
    const TrainConfig c = load_train_config(config_path(name));
    const std::string yaml = resolved_config_yaml(c, config_path(name));
    const TrainConfig back = parse_train_config(yaml, "resolved.yaml");
    EXPECT_EQ(back, c) << yaml;
    // A second pass prints the same text: nothing drifts (number formatting, quoting).
    EXPECT_EQ(resolved_config_yaml(back, config_path(name)), yaml);
  }
}

TEST(TrainConfig, ResolvedYamlSpellsOutTheDefaults) {
  const std::string yaml = resolved_config_yaml(load_train_config(config_path("minimal.yaml")), "minimal.yaml");
  EXPECT_EQ(yaml.rfind("# shardlab train: resolved from minimal.yaml\n", 0), 0u) << yaml;
  for (const char* line : {"tokenizer: models/tiny\n", "learning_rate: 5.0e-05\n", "optimizer: adamw\n",
                           "lr_scheduler: linear\n", "adam_epsilon: 1.0e-08\n", "max_grad_norm: 1\n",
                           "sequence_len: 2048\n", "output_dir: ./model-out\n", "bf16: false\n",
                           "device: auto\n", "field_instruction: instruction\n", "seed: 42\n"})
    EXPECT_NE(yaml.find(line), std::string::npos) << line << " missing from\n" << yaml;
  // Keys the config does not use are left out rather than printed empty.
  EXPECT_EQ(yaml.find("model_config"), std::string::npos) << yaml;
  EXPECT_EQ(yaml.find("generate_after_training"), std::string::npos) << yaml;
}

TEST(TrainConfig, ResolvedYamlOfSgdLeavesOutTheAdamKeys) {
  const std::string yaml = resolved_config_yaml(load_train_config(config_path("scratch.yaml")));
  EXPECT_EQ(yaml.find("adam_beta1"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("optimizer: sgd"), std::string::npos) << yaml;
  EXPECT_EQ(yaml.find("base_model"), std::string::npos) << yaml;
}

TEST(TrainConfig, ResolveAutoOnCpuTurnsEveryAutoOff) {
  TrainConfig c = load_train_config(config_path("minimal.yaml"));
  c.bf16 = Toggle::automatic;
  c.fp16 = Toggle::automatic;
  c.tf32 = Toggle::automatic;
  const TrainConfig r = resolve_auto(c, RuntimeCaps{});
  EXPECT_EQ(r.device, DeviceKind::cpu);
  EXPECT_EQ(r.bf16, Toggle::off);
  EXPECT_EQ(r.fp16, Toggle::off);
  EXPECT_EQ(r.tf32, Toggle::off);
  EXPECT_EQ(resolved_config_yaml(r).find("auto"), std::string::npos);
  // Explicit choices are kept.
  c.fp16 = Toggle::on;
  EXPECT_EQ(resolve_auto(c, RuntimeCaps{}).fp16, Toggle::on);
}

TEST(TrainConfig, ResolveAutoOnGpuPrefersBf16ThenFp16) {
  TrainConfig c = load_train_config(config_path("minimal.yaml"));
  c.bf16 = Toggle::automatic;
  c.fp16 = Toggle::automatic;
  c.tf32 = Toggle::automatic;
  const TrainConfig ampere = resolve_auto(c, RuntimeCaps{true, true, true});
  EXPECT_EQ(ampere.device, DeviceKind::cuda);
  EXPECT_EQ(ampere.bf16, Toggle::on);
  EXPECT_EQ(ampere.fp16, Toggle::off);
  EXPECT_EQ(ampere.tf32, Toggle::on);
  const TrainConfig volta = resolve_auto(c, RuntimeCaps{true, false, false});
  EXPECT_EQ(volta.bf16, Toggle::off);
  EXPECT_EQ(volta.fp16, Toggle::on);
  EXPECT_EQ(volta.tf32, Toggle::off);
  // device: cpu stays on the CPU even with a GPU present.
  c.device = DeviceKind::cpu;
  EXPECT_EQ(resolve_auto(c, RuntimeCaps{true, true, true}).bf16, Toggle::off);
}

}  // namespace
}  // namespace shardlab::config
