// The resolved side of a train config: enum names, `auto` resolved against the machine, and the
// whole configuration written back as YAML (every default spelled out, loadable again).
#include <charconv>
#include <cmath>

#include <yaml-cpp/yaml.h>

#include "core/error.h"
#include "tools/config/train_config.h"

namespace shardlab::config {

std::string_view to_string(OptimizerKind v) {
  switch (v) {
    case OptimizerKind::adamw: return "adamw";
    case OptimizerKind::sgd: return "sgd";
    case OptimizerKind::adamw_8bit: return "adamw_8bit";
  }
  return "adamw";
}

std::string_view to_string(LrSchedulerKind v) {
  switch (v) {
    case LrSchedulerKind::constant: return "constant";
    case LrSchedulerKind::linear: return "linear";
    case LrSchedulerKind::cosine: return "cosine";
  }
  return "?";
}

std::string_view to_string(Toggle v) {
  switch (v) {
    case Toggle::off: return "false";
    case Toggle::on: return "true";
    case Toggle::automatic: return "auto";
  }
  return "?";
}

std::string_view to_string(DeviceKind v) {
  switch (v) {
    case DeviceKind::cpu: return "cpu";
    case DeviceKind::cuda: return "cuda";
    case DeviceKind::automatic: return "auto";
  }
  return "?";
}

std::string_view to_string(DatasetType v) {
  switch (v) {
    case DatasetType::alpaca: return "alpaca";
    case DatasetType::completion: return "completion";
    case DatasetType::custom: return "custom";
  }
  return "?";
}

std::string_view to_string(AdapterKind v) {
  switch (v) {
    case AdapterKind::none: return "none";
    case AdapterKind::lora: return "lora";
    case AdapterKind::qlora: return "qlora";
  }
  return "?";
}

std::string_view to_string(ComputeDType v) {
  switch (v) {
    case ComputeDType::automatic: return "auto";
    case ComputeDType::float32: return "float32";
    case ComputeDType::bfloat16: return "bfloat16";
    case ComputeDType::float16: return "float16";
  }
  return "?";
}

TrainConfig resolve_auto(const TrainConfig& cfg, const RuntimeCaps& caps) {
  TrainConfig r = cfg;
  if (r.device == DeviceKind::automatic) r.device = caps.cuda_available ? DeviceKind::cuda : DeviceKind::cpu;
  SL_CHECK(r.device != DeviceKind::cuda || caps.cuda_available,
           "train config: device is cuda but no CUDA device is visible (use device: cpu or auto)");
  const bool gpu = r.device == DeviceKind::cuda;
  // bf16 first: fp16 auto is the fallback for GPUs without bf16, never stacked on top of it.
  if (r.bf16 == Toggle::automatic) r.bf16 = gpu && caps.bf16_supported ? Toggle::on : Toggle::off;
  if (r.fp16 == Toggle::automatic) r.fp16 = gpu && r.bf16 == Toggle::off ? Toggle::on : Toggle::off;
  if (r.tf32 == Toggle::automatic) r.tf32 = gpu && caps.tf32_supported ? Toggle::on : Toggle::off;
  SL_CHECK(!(gpu && r.bf16 == Toggle::on && !caps.bf16_supported),
           "train config: bf16 is true but this GPU has no bf16 support (use fp16 or bf16: auto)");
  SL_CHECK(!(gpu && r.tf32 == Toggle::on && !caps.tf32_supported),
           "train config: tf32 is true but this GPU has no tf32 support (use tf32: auto or false)");
  SL_CHECK(gpu || r.tf32 == Toggle::off,
           "train config: tf32 is a CUDA matmul mode: it cannot be true when training on the cpu");
  return r;
}

namespace {

// The shortest digits that parse back to exactly the same double: in plain notation from 0.001 up
// (0.05, 500000), in scientific below (3.0e-04, as learning rates are written). The mantissa keeps
// a ".0" so that YAML 1.1 readers (PyYAML) also take it for a float.
std::string number(double v) {
  char buf[64];
  const bool scientific = v != 0 && std::fabs(v) < 1e-3;
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, scientific ? std::chars_format::scientific
                                                                             : std::chars_format::fixed);
  std::string text(buf, end);
  if (scientific && text.find('.') == std::string::npos) text.insert(text.find('e'), ".0");
  return text;
}

void key_value(YAML::Emitter& e, const char* key, const std::string& value) {
  e << YAML::Key << key << YAML::Value << value;  // "" stays "", not null: a few defaults are not empty
}
void key_value(YAML::Emitter& e, const char* key, std::string_view value) { key_value(e, key, std::string(value)); }
void key_value(YAML::Emitter& e, const char* key, int64_t value) { e << YAML::Key << key << YAML::Value << value; }
void key_value(YAML::Emitter& e, const char* key, double value) { e << YAML::Key << key << YAML::Value << number(value); }
void key_value(YAML::Emitter& e, const char* key, bool value) {
  e << YAML::Key << key << YAML::Value << (value ? "true" : "false");
}

void emit_model_config(YAML::Emitter& e, const ModelConfigFields& m) {
  e << YAML::Key << "model_config" << YAML::Value << YAML::BeginMap;
  const auto size = [&](const char* key, const std::optional<int64_t>& v) {
    if (v) key_value(e, key, *v);
  };
  size("vocab_size", m.vocab_size);
  size("hidden_size", m.hidden_size);
  size("intermediate_size", m.intermediate_size);
  size("num_hidden_layers", m.num_hidden_layers);
  size("num_attention_heads", m.num_attention_heads);
  size("num_key_value_heads", m.num_key_value_heads);
  size("max_position_embeddings", m.max_position_embeddings);
  if (m.rope_theta) key_value(e, "rope_theta", *m.rope_theta);
  if (m.rms_norm_eps) key_value(e, "rms_norm_eps", *m.rms_norm_eps);
  if (m.tie_word_embeddings) key_value(e, "tie_word_embeddings", *m.tie_word_embeddings);
  e << YAML::EndMap;
}

// Only the keys the dataset's type reads: the others would be rejected when loaded back.
void emit_dataset(YAML::Emitter& e, const DatasetConfig& d) {
  e << YAML::BeginMap;
  key_value(e, "path", d.path);
  key_value(e, "type", to_string(d.type));
  if (d.type == DatasetType::completion) {
    key_value(e, "field", d.field);
  } else {
    key_value(e, "field_instruction", d.field_instruction);
    key_value(e, "field_input", d.field_input);
    key_value(e, "field_output", d.field_output);
    if (d.type == DatasetType::custom) key_value(e, "field_system", d.field_system);
    key_value(e, "system_prompt", d.system_prompt);
  }
  if (d.type == DatasetType::custom) {
    key_value(e, "format", d.format);
    key_value(e, "no_input_format", d.no_input_format);
    key_value(e, "system_format", d.system_format);
  }
  e << YAML::EndMap;
}

// Only with an adapter: the lora keys are errors without one.
void emit_adapter(YAML::Emitter& e, const AdapterConfig& a) {
  if (a.kind == AdapterKind::none) return;
  key_value(e, "adapter", to_string(a.kind));
  key_value(e, "lora_r", a.lora_r);
  key_value(e, "lora_alpha", a.lora_alpha);
  key_value(e, "lora_dropout", a.lora_dropout);
  if (!a.lora_target_modules.empty()) {
    e << YAML::Key << "lora_target_modules" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const std::string& m : a.lora_target_modules) e << m;
    e << YAML::EndSeq;
  }
  key_value(e, "lora_target_linear", a.lora_target_linear);
  if (!a.lora_model_dir.empty()) key_value(e, "lora_model_dir", a.lora_model_dir);
  if (a.load_in_4bit) {
    key_value(e, "load_in_4bit", true);
    key_value(e, "bnb_4bit_quant_type", std::string("nf4"));
    key_value(e, "bnb_4bit_use_double_quant", true);
    key_value(e, "bnb_4bit_compute_dtype", to_string(a.bnb_4bit_compute_dtype));
  }
}

// Unprefixed keys (Axolotl's current spelling); only when FSDP is on.
void emit_fsdp(YAML::Emitter& e, const FsdpSettings& f) {
  if (!f.enabled) return;
  key_value(e, "fsdp_version", f.version);
  e << YAML::Key << "fsdp_config" << YAML::Value << YAML::BeginMap;
  key_value(e, "sharding_strategy", to_string(f.sharding_strategy));
  if (f.auto_wrap_policy != FsdpAutoWrapPolicy::none) key_value(e, "auto_wrap_policy", to_string(f.auto_wrap_policy));
  if (f.auto_wrap_policy == FsdpAutoWrapPolicy::transformer_based)
    key_value(e, "transformer_layer_cls_to_wrap", f.transformer_layer_cls_to_wrap);
  if (f.min_num_params) key_value(e, "min_num_params", *f.min_num_params);
  key_value(e, "offload_params", f.offload_params);
  key_value(e, "state_dict_type", to_string(f.state_dict_type));
  key_value(e, "cpu_ram_efficient_loading", f.cpu_ram_efficient_loading);
  key_value(e, "backward_prefetch", to_string(f.backward_prefetch));
  key_value(e, "forward_prefetch", f.forward_prefetch);
  key_value(e, "sync_module_states", f.sync_module_states);
  key_value(e, "use_orig_params", f.use_orig_params);
  key_value(e, "activation_checkpointing", f.activation_checkpointing);
  if (f.hybrid_shard_group_size) key_value(e, "hybrid_shard_group_size", *f.hybrid_shard_group_size);
  e << YAML::EndMap;
}

}  // namespace

std::string resolved_config_yaml(const TrainConfig& c, const std::string& source_path) {
  YAML::Emitter e;
  e << YAML::BeginMap;
  if (!c.base_model.empty()) key_value(e, "base_model", c.base_model);
  if (c.model_config) emit_model_config(e, *c.model_config);
  key_value(e, "tokenizer", c.tokenizer);
  e << YAML::Key << "datasets" << YAML::Value << YAML::BeginSeq;
  for (const DatasetConfig& d : c.datasets) emit_dataset(e, d);
  e << YAML::EndSeq;
  key_value(e, "val_set_size", c.val_set_size);
  key_value(e, "sequence_len", c.sequence_len);
  key_value(e, "sample_packing", c.sample_packing);
  key_value(e, "pad_to_sequence_len", c.pad_to_sequence_len);
  key_value(e, "train_on_inputs", c.train_on_inputs);

  key_value(e, "micro_batch_size", c.micro_batch_size);
  key_value(e, "gradient_accumulation_steps", c.gradient_accumulation_steps);
  key_value(e, "num_epochs", c.num_epochs);
  key_value(e, "max_steps", c.max_steps);

  key_value(e, "optimizer", to_string(c.optimizer));
  key_value(e, "learning_rate", c.learning_rate);
  key_value(e, "weight_decay", c.weight_decay);
  if (c.optimizer != OptimizerKind::sgd) {  // sgd rejects the Adam keys
    key_value(e, "adam_beta1", c.adam_beta1);
    key_value(e, "adam_beta2", c.adam_beta2);
    key_value(e, "adam_epsilon", c.adam_epsilon);
  }
  key_value(e, "lr_scheduler", to_string(c.lr_scheduler));
  key_value(e, "warmup_steps", c.warmup_steps);
  key_value(e, "warmup_ratio", c.warmup_ratio);
  key_value(e, "max_grad_norm", c.max_grad_norm);
  key_value(e, "seed", c.seed);

  key_value(e, "output_dir", c.output_dir);
  key_value(e, "logging_steps", c.logging_steps);
  key_value(e, "eval_steps", c.eval_steps);
  key_value(e, "saves_per_epoch", c.saves_per_epoch);
  key_value(e, "save_steps", c.save_steps);
  key_value(e, "resume_from_checkpoint", c.resume_from_checkpoint);

  key_value(e, "bf16", to_string(c.bf16));
  key_value(e, "fp16", to_string(c.fp16));
  key_value(e, "tf32", to_string(c.tf32));
  key_value(e, "gradient_checkpointing", c.gradient_checkpointing);
  key_value(e, "flash_attention", c.flash_attention);
  if (c.trace) key_value(e, "trace", true);
  key_value(e, "device", to_string(c.device));
  emit_adapter(e, c.adapter);
  if (!c.deepspeed.empty()) key_value(e, "deepspeed", c.deepspeed);
  key_value(e, "ddp_timeout", c.distributed.ddp_timeout_seconds);
  // auto is decided with the ranks in view (train prints "# collectives: ..."), not here.
  if (c.distributed.ddp_backend != DdpBackend::automatic)
    key_value(e, "ddp_backend", std::string(to_string(c.distributed.ddp_backend)));
  emit_fsdp(e, c.fsdp);
  if (c.generate_after_training) {
    e << YAML::Key << "generate_after_training" << YAML::Value << YAML::BeginMap;
    key_value(e, "prompt", c.generate_after_training->prompt);
    key_value(e, "max_new_tokens", c.generate_after_training->max_new_tokens);
    e << YAML::EndMap;
  }
  e << YAML::EndMap;
  SL_CHECK(e.good(), "resolved_config_yaml: YAML emitter failed: ", e.GetLastError());

  std::string out = source_path.empty() ? "" : "# shardlab train: resolved from " + source_path + "\n";
  return out + e.c_str() + "\n";
}

}  // namespace shardlab::config
