// The key tables of a train config and the edit distance behind "did you mean '...'?".
#include "tools/config/config_keys.h"

#include <algorithm>
#include <numeric>
#include <string>

namespace shardlab::config::detail {

namespace {
bool contains(const std::vector<std::string_view>& list, std::string_view key) {
  return std::find(list.begin(), list.end(), key) != list.end();
}
}  // namespace

bool KeySet::is_known(std::string_view key) const { return contains(known, key); }
bool KeySet::is_unsupported(std::string_view key) const { return contains(unsupported, key); }

const KeySet& top_level_keys() {
  static const KeySet keys{
      "",
      {"base_model", "model_config", "tokenizer", "datasets", "val_set_size", "sequence_len",
       "sample_packing", "pad_to_sequence_len", "train_on_inputs", "micro_batch_size",
       "gradient_accumulation_steps", "num_epochs", "max_steps", "optimizer", "learning_rate",
       "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "lr_scheduler", "warmup_steps",
       "warmup_ratio", "max_grad_norm", "seed", "output_dir", "logging_steps", "eval_steps",
       "saves_per_epoch", "save_steps", "resume_from_checkpoint", "bf16", "fp16", "tf32",
       "gradient_checkpointing", "flash_attention", "trace", "device", "generate_after_training", "deepspeed", "ddp_timeout", "ddp_backend",
       "adapter", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_linear",
       "lora_model_dir", "load_in_4bit", "bnb_4bit_quant_type", "bnb_4bit_compute_dtype",
       "bnb_4bit_use_double_quant", "fsdp", "fsdp_config", "fsdp_version"},
      // Axolotl keys of features that come later (adapters, quantisation, sharding, logging
      // services, chat templates, ...): named so that a config using them fails loudly.
      {"lora_modules_to_save", "lora_fan_in_fan_out", "peft_use_dora", "peft_use_rslora",
       "load_in_8bit", "gptq", "model_type", "tokenizer_type", "tokenizer_config",
       "trust_remote_code", "chat_template", "special_tokens", "tokens", "dataset_prepared_path",
       "push_dataset_to_hub", "hub_model_id", "wandb_project", "wandb_entity", "wandb_name",
       "wandb_watch", "wandb_log_model", "wandb_run_id", "evals_per_epoch", "eval_sample_packing",
       "eval_batch_size", "early_stopping_patience", "group_by_length", "lr_scheduler_kwargs",
       "optim_args", "xformers_attention", "sdp_attention", "s2_attention", "flash_attn_cross_entropy",
       "flash_attn_rms_norm", "unfrozen_parameters", "noisy_embedding_alpha", "neftune_noise_alpha",
       "auto_resume_from_checkpoints", "save_total_limit", "save_safetensors", "local_rank",
       "strict", "debug", "torch_compile", "float16", "torchdistx_path", "loss_watchdog_threshold",
       "loss_watchdog_patience", "rl", "max_memory", "gpu_memory_limit", "lora_on_cpu"}};
  return keys;
}

const KeySet& dataset_keys() {
  static const KeySet keys{
      "datasets[i]",
      {"path", "type", "field", "field_instruction", "field_input", "field_output", "field_system",
       "system_prompt", "format", "no_input_format", "system_format", "ds_type", "split"},
      {"data_files", "name", "revision", "shards", "conversation", "chat_template",
       "field_messages", "message_field_role", "message_field_content", "roles", "train_on_split",
       "trust_remote_code"}};
  return keys;
}

const KeySet& custom_format_keys() {
  static const KeySet keys{
      "datasets[i].type",
      {"field_instruction", "field_input", "field_output", "field_system", "system_prompt",
       "format", "no_input_format", "system_format"},
      {}};
  return keys;
}

const KeySet& model_config_keys() {
  static const KeySet keys{
      "model_config",
      {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
       "num_key_value_heads", "max_position_embeddings", "rope_theta", "rms_norm_eps",
       "tie_word_embeddings"},
      {"head_dim", "rope_scaling", "initializer_range", "torch_dtype", "bos_token_id",
       "eos_token_id", "pad_token_id", "hidden_act", "attention_bias", "mlp_bias"}};
  return keys;
}

const KeySet& fsdp_config_keys() {
  // Each key with and without Axolotl's `fsdp_` prefix (Axolotl strips it; both are in the wild).
  static const KeySet keys = [] {
    static const std::vector<std::string> names = [] {
      std::vector<std::string> out;
      for (const char* k : {"version", "sharding_strategy", "reshard_after_forward", "offload_params",
                            "cpu_offload_pin_memory", "auto_wrap_policy", "transformer_layer_cls_to_wrap",
                            "min_num_params", "state_dict_type", "final_state_dict_type", "cpu_ram_efficient_loading",
                            "backward_prefetch", "forward_prefetch", "sync_module_states", "use_orig_params",
                            "activation_checkpointing", "hybrid_shard_group_size"}) {
        out.emplace_back(k);
        out.push_back(std::string("fsdp_") + k);
      }
      return out;
    }();
    KeySet set{"fsdp_config", {}, {"mixed_precision_policy", "fsdp_mixed_precision_policy", "limit_all_gathers",
                                   "fsdp_limit_all_gathers", "backward_prefetch_policy", "fsdp_backward_prefetch_policy",
                                   "activation_offloading", "fsdp_activation_offloading"}};
    for (const std::string& n : names) set.known.push_back(n);
    return set;
  }();
  return keys;
}

const KeySet& generate_keys() {
  static const KeySet keys{"generate_after_training",
                           {"prompt", "max_new_tokens"},
                           {"temperature", "top_k", "top_p", "do_sample"}};
  return keys;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  // Three rolling rows of the dynamic programme: d[i][j] needs rows i-1 and (for a swap) i-2.
  const std::size_t n = b.size();
  std::vector<std::size_t> prev2(n + 1), prev(n + 1), cur(n + 1);
  std::iota(prev.begin(), prev.end(), std::size_t{0});
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= n; ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        cur[j] = std::min(cur[j], prev2[j - 2] + 1);
    }
    std::swap(prev2, prev);
    std::swap(prev, cur);
  }
  return prev[n];
}

std::optional<std::string_view> closest_key(std::string_view key, const KeySet& keys) {
  const std::size_t limit = std::clamp<std::size_t>(key.size() / 3, 1, 3);
  std::optional<std::string_view> best;
  std::size_t best_distance = limit + 1;
  for (const auto* list : {&keys.known, &keys.unsupported}) {
    for (std::string_view candidate : *list) {
      const std::size_t d = edit_distance(key, candidate);
      if (d < best_distance) {
        best_distance = d;
        best = candidate;
      }
    }
  }
  return best;
}

}  // namespace shardlab::config::detail
