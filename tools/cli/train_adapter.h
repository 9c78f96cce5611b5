// The adapter half of `shardlab train`: the model built or loaded (4-bit NF4 for QLoRA), LoRA
// settings from the config's adapter keys, the model wrapped (or an existing PEFT adapter loaded
// to continue from), and a one-line summary.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/llama.h"
#include "nn/lora.h"
#include "nn/precision_policy.h"
#include "tools/config/train_config.h"

namespace shardlab::cli {

struct AdapterSetup {
  nn::LoraSettings settings;         // as trained (from lora_model_dir's adapter_config.json when given)
  std::vector<std::string> wrapped;  // module paths
};

// QLoRA's compute dtype: bnb_4bit_compute_dtype, which must agree with the training precision's
// parameter dtype (auto: that dtype). An error names the key otherwise.
DType qlora_compute_dtype(const config::TrainConfig& cfg, DType param_dtype);

// The model to train: loaded from base_model or built from model_config (seeded by cfg.seed), cast
// to bf16/f16 for 16-bit training; with load_in_4bit its decoder projections become frozen NF4
// (QLoRA), quantized while loading, and everything else computes in qlora_compute_dtype.
std::unique_ptr<models::LlamaForCausalLM> build_model(const config::TrainConfig& cfg, const nn::PrecisionPolicy& precision,
                                                      int64_t tokenizer_vocab, const std::string& config_path);

nn::LoraSettings lora_settings_from(const config::AdapterConfig& adapter, uint64_t seed);

// Wraps `model` as cfg.adapter says, freezing everything but the adapters; nullopt without an
// adapter. With lora_model_dir, that adapter's config and tensors are loaded instead.
std::optional<AdapterSetup> apply_adapter(const config::TrainConfig& cfg, models::LlamaForCausalLM& model);

// "adapter: lora r=8 alpha=16 dropout=0 on 4 modules (q_proj, v_proj); trainable 2048 of 5.1M parameters (0.04%)"
std::string describe(const config::TrainConfig& cfg, const AdapterSetup& setup, const models::LlamaForCausalLM& model);

}  // namespace shardlab::cli
