// The `shardlab train CONFIG.yaml` configuration: Axolotl-style keys parsed once, at the boundary,
// into typed fields and enums, with every default filled in and every bad key or value rejected.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tools/config/distributed_settings.h"
#include "tools/config/fsdp_config.h"

namespace shardlab::config {

// adamw_torch (Axolotl's and Hugging Face's name) parses to the same decoupled-weight-decay AdamW;
// adamw_bnb_8bit to the same 8-bit (bitsandbytes-style blockwise) AdamW as adamw_8bit.
enum class OptimizerKind { adamw, sgd, adamw_8bit };
enum class LrSchedulerKind { constant, linear, cosine };
// A precision switch (bf16, fp16, tf32) that may be left to the hardware: see resolve_auto().
enum class Toggle { off, on, automatic };
// `auto` (the default) picks cuda when resolve_auto() is told a GPU is visible.
enum class DeviceKind { cpu, cuda, automatic };
// alpaca: instruction/input/output records in the Alpaca template; completion: raw text in `field`;
// custom: the user's own `format` (Axolotl writes it as a map under `type:`, which is accepted too).
enum class DatasetType { alpaca, completion, custom };
// `adapter:` lora trains low-rank adapters on a frozen base; qlora does so on a base quantized to
// 4-bit NF4 (load_in_4bit: true).
enum class AdapterKind { none, lora, qlora };
// bnb_4bit_compute_dtype: what the 4-bit base computes in; auto follows bf16/fp16 (else float32).
enum class ComputeDType { automatic, float32, bfloat16, float16 };

std::string_view to_string(OptimizerKind v);
std::string_view to_string(LrSchedulerKind v);
std::string_view to_string(Toggle v);
std::string_view to_string(DeviceKind v);
std::string_view to_string(DatasetType v);
std::string_view to_string(AdapterKind v);
std::string_view to_string(ComputeDType v);

// Architecture for training from scratch (`model_config:` instead of `base_model:`). Fields keep
// Hugging Face config.json's names; an unset field takes LlamaConfig's default (models/), except
// the four sizes that decide the model's size, which are required (the defaults are Llama-2-7B's).
struct ModelConfigFields {
  std::optional<int64_t> vocab_size;  // unset: the tokenizer's vocabulary size
  std::optional<int64_t> hidden_size;
  std::optional<int64_t> intermediate_size;
  std::optional<int64_t> num_hidden_layers;
  std::optional<int64_t> num_attention_heads;
  std::optional<int64_t> num_key_value_heads;
  std::optional<int64_t> max_position_embeddings;
  std::optional<double> rope_theta;
  std::optional<double> rms_norm_eps;
  std::optional<bool> tie_word_embeddings;

  bool operator==(const ModelConfigFields&) const = default;
};

// One entry of `datasets:`, with the meaning of models/prompt_format.h's DatasetSpec. Only the keys
// that the dataset's type reads may be given (a `field` on an alpaca dataset is an error, not
// ignored): completion reads `field`; alpaca reads field_instruction/input/output and
// system_prompt; custom reads every key but `field`. `ds_type: json` and `split: train` are
// accepted (they are the only data sources there are) and leave no trace here.
struct DatasetConfig {
  std::string path;  // a local .json (array of objects, or JSON lines) or .jsonl file
  DatasetType type = DatasetType::alpaca;
  std::string field = "text";  // completion: the column holding the text
  std::string field_instruction = "instruction";
  std::string field_input = "input";
  std::string field_output = "output";
  std::string field_system = "system";
  std::string system_prompt;    // alpaca: replaces the preamble; custom: used when a record has no system
  // custom: templates with the placeholders {instruction}, {input}, {system} ({{ and }} are
  // literal braces). no_input_format, used for records without an input, cannot use {input}.
  std::string format;           // e.g. "[INST] {instruction} {input} [/INST]"
  std::string no_input_format;  // empty: `format` with an empty input
  std::string system_format = "{system}";

  bool operator==(const DatasetConfig&) const = default;
};

// DeepSpeed's fp16 block: the dynamic loss scaler's knobs (names and defaults as DeepSpeed's).
struct LossScalerSettings {
  double loss_scale = 0.0;  // 0: dynamic
  int64_t initial_scale_power = 16;
  int64_t loss_scale_window = 1000;
  int64_t hysteresis = 2;
  bool consecutive_hysteresis = false;
  double min_loss_scale = 1.0;

  bool operator==(const LossScalerSettings&) const = default;
};

// The adapter keys (Axolotl's names). Every lora_* key needs an adapter; an adapter needs targets
// (lora_target_modules and/or lora_target_linear) unless lora_model_dir brings its own.
struct AdapterConfig {
  AdapterKind kind = AdapterKind::none;
  int64_t lora_r = 8;
  double lora_alpha = 16;
  double lora_dropout = 0.0;
  std::vector<std::string> lora_target_modules;  // PEFT's suffix matching: q_proj, v_proj, ...
  bool lora_target_linear = false;               // every linear layer but lm_head
  // A PEFT adapter to continue training: its adapter_config.json decides r, alpha and targets.
  std::string lora_model_dir;
  // QLoRA. bnb_4bit_quant_type must be nf4 and bnb_4bit_use_double_quant true (the only 4-bit
  // format there is), so neither needs a field.
  bool load_in_4bit = false;
  ComputeDType bnb_4bit_compute_dtype = ComputeDType::automatic;

  bool operator==(const AdapterConfig&) const = default;
};

struct GenerateAfterTraining {
  std::string prompt;
  int64_t max_new_tokens = 64;

  bool operator==(const GenerateAfterTraining&) const = default;
};

struct TrainConfig {
  // Model and data. Exactly one of base_model (a Hugging Face model directory) and model_config.
  std::string base_model;
  std::optional<ModelConfigFields> model_config;
  std::string tokenizer;  // a tokenizer.json (or its directory) or "byte"; default: base_model
  std::vector<DatasetConfig> datasets;
  double val_set_size = 0.0;  // a fraction in [0, 1), or a whole number of examples when >= 1
  int64_t sequence_len = 2048;
  bool sample_packing = false;
  bool pad_to_sequence_len = false;
  bool train_on_inputs = false;

  // Schedule. max_steps > 0 takes precedence over num_epochs; both zero is an error.
  int64_t micro_batch_size = 1;
  int64_t gradient_accumulation_steps = 1;
  int64_t num_epochs = 1;
  int64_t max_steps = 0;

  // Optimizer and learning rate (Hugging Face TrainingArguments' defaults). warmup_steps and
  // warmup_ratio are alternatives: at most one may be non-zero.
  OptimizerKind optimizer = OptimizerKind::adamw;
  double learning_rate = 5e-5;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  LrSchedulerKind lr_scheduler = LrSchedulerKind::linear;
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;
  double max_grad_norm = 1.0;  // 0: no clipping
  int64_t seed = 42;

  // Output. eval_steps needs a validation set; saves_per_epoch and save_steps are alternatives
  // (0 and 0: save once, at the end).
  std::string output_dir = "./model-out";
  int64_t logging_steps = 1;
  int64_t eval_steps = 0;
  int64_t saves_per_epoch = 0;
  int64_t save_steps = 0;
  std::string resume_from_checkpoint;  // empty: start fresh

  // Precision and execution.
  Toggle bf16 = Toggle::off;
  Toggle fp16 = Toggle::off;
  Toggle tf32 = Toggle::off;
  bool gradient_checkpointing = false;
  bool flash_attention = false;
  // Write a Chrome trace (trace.json in output_dir, every rank merged) of the training run.
  bool trace = false;
  DeviceKind device = DeviceKind::automatic;

  std::optional<GenerateAfterTraining> generate_after_training;

  AdapterConfig adapter;

  // `deepspeed: ds.json`: a DeepSpeed config merged into this one (see deepspeed_config.h).
  std::string deepspeed;
  LossScalerSettings loss_scaler;
  // DeepSpeed's communication_data_type ("fp32", "fp16", "bf16"): the gradient reduce dtype;
  // empty: the parameter dtype.
  std::string communication_data_type;
  // Data parallelism across ranks (see distributed_settings.h).
  DistributedSettings distributed;
  // Axolotl's `fsdp:` / `fsdp_config:` (fsdp_config.h); an alternative to `deepspeed:`.
  FsdpSettings fsdp;

  bool operator==(const TrainConfig&) const = default;
};

// Reads and validates a config file. Every error is a shardlab::Error with one line that starts
// with the file name, and line:column where the YAML has a position for it: malformed YAML,
// unknown keys (with the closest known key as a suggestion), keys of features not supported yet,
// duplicate keys, wrong types, out-of-range or unknown enum values, and contradictions. A key with
// an empty value (`adapter:`, as Axolotl's examples write) means "not set": the default applies,
// and a not-yet-supported feature key that is empty or false is accepted as switched off.
TrainConfig load_train_config(const std::string& path);
// The same from YAML text; `source_name` stands in for the file name in error messages.
TrainConfig parse_train_config(const std::string& yaml_text, const std::string& source_name);

// What resolve_auto() needs to know about the machine; the trainer fills it in.
struct RuntimeCaps {
  bool cuda_available = false;
  bool bf16_supported = false;  // on the GPU (compute capability >= 8.0)
  bool tf32_supported = false;  // on the GPU (compute capability >= 8.0)
};

// Replaces every `auto` with a concrete choice and checks what needs the machine:
//   device auto -> cuda when caps.cuda_available, else cpu; device cuda without a GPU is an error.
//   bf16 auto   -> on when the device is cuda and supports bf16; off on the CPU.
//   fp16 auto   -> on when the device is cuda and bf16 did not resolve on; off on the CPU.
//   tf32 auto   -> on when the device is cuda and supports tf32; off on the CPU.
// bf16/tf32 `true` on a GPU without support, and tf32 `true` on the CPU, are errors.
TrainConfig resolve_auto(const TrainConfig& cfg, const RuntimeCaps& caps);

// The fully resolved configuration as YAML: every key with its value, defaults included, so that
// parse_train_config() of the text gives back an equal TrainConfig. Dataset entries list the keys
// their type reads; model_config lists the fields that are set. With `source_path`, a first
// comment line says which file it was resolved from.
std::string resolved_config_yaml(const TrainConfig& cfg, const std::string& source_path = {});

}  // namespace shardlab::config
