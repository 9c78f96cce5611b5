// LoRA/QLoRA setup for `shardlab train` (see train_adapter.h).
#include "tools/cli/train_adapter.h"

#include <cstdio>
#include <set>

#include "models/llama_io.h"
#include "models/llama_quantize.h"
#include "models/peft_adapter.h"
#include "tools/cli/llama_from_config.h"

namespace shardlab::cli {

DType qlora_compute_dtype(const config::TrainConfig& cfg, DType param_dtype) {
  DType wanted = param_dtype;
  switch (cfg.adapter.bnb_4bit_compute_dtype) {
    case config::ComputeDType::automatic: return param_dtype;
    case config::ComputeDType::float32: wanted = DType::f32; break;
    case config::ComputeDType::bfloat16: wanted = DType::bf16; break;
    case config::ComputeDType::float16: wanted = DType::f16; break;
  }
  // One dtype for the whole model: the 4-bit projections, the frozen embeddings/norms/head and the
  // adapters all compute in it, and the bf16/fp16 switches decide it.
  SL_CHECK(wanted == param_dtype, "bnb_4bit_compute_dtype ", config::to_string(cfg.adapter.bnb_4bit_compute_dtype),
           " disagrees with the training precision (parameters in ", dtype_name(param_dtype),
           "): set bf16/fp16 to match, or leave bnb_4bit_compute_dtype out");
  return wanted;
}

std::unique_ptr<models::LlamaForCausalLM> build_model(const config::TrainConfig& cfg, const nn::PrecisionPolicy& precision,
                                                      int64_t tokenizer_vocab, const std::string& config_path) {
  const uint64_t seed = static_cast<uint64_t>(cfg.seed);
  const DType dtype = precision.param_dtype;
  if (cfg.adapter.load_in_4bit) {
    const DType compute = qlora_compute_dtype(cfg, dtype);
    // From a checkpoint, each projection is quantized as it is read: the full-precision model is
    // never in memory at once.
    if (!cfg.base_model.empty()) return models::load_llama_nf4(cfg.base_model, compute, seed);
    SL_CHECK(cfg.model_config.has_value(), config_path, ": needs base_model or model_config");
    auto model = std::make_unique<models::LlamaForCausalLM>(llama_config_from(*cfg.model_config, tokenizer_vocab), seed);
    models::quantize_llama_nf4(*model, compute);
    return model;
  }
  std::unique_ptr<models::LlamaForCausalLM> model;
  if (!cfg.base_model.empty()) {
    model = models::load_llama(cfg.base_model, seed);
  } else {
    SL_CHECK(cfg.model_config.has_value(), config_path, ": needs base_model or model_config");
    model = std::make_unique<models::LlamaForCausalLM>(llama_config_from(*cfg.model_config, tokenizer_vocab), seed);
  }
  if (precision.uses_master_weights()) model->to(dtype);
  return model;
}

nn::LoraSettings lora_settings_from(const config::AdapterConfig& a, uint64_t seed) {
  nn::LoraSettings s;
  s.r = a.lora_r;
  s.alpha = a.lora_alpha;
  s.dropout = a.lora_dropout;
  s.target_modules = a.lora_target_modules;
  s.target_linear = a.lora_target_linear;
  s.seed = seed;
  return s;
}

std::optional<AdapterSetup> apply_adapter(const config::TrainConfig& cfg, models::LlamaForCausalLM& model) {
  if (cfg.adapter.kind == config::AdapterKind::none) return std::nullopt;
  const uint64_t seed = static_cast<uint64_t>(cfg.seed);
  AdapterSetup setup;
  if (!cfg.adapter.lora_model_dir.empty()) {
    setup.settings = models::read_peft_config(cfg.adapter.lora_model_dir, seed);
    setup.wrapped = models::load_peft_adapter(model, cfg.adapter.lora_model_dir, seed);
  } else {
    setup.settings = lora_settings_from(cfg.adapter, seed);
    setup.wrapped = nn::apply_lora(model, setup.settings);
  }
  return setup;
}

std::string describe(const config::TrainConfig& cfg, const AdapterSetup& setup, const models::LlamaForCausalLM& model) {
  std::set<std::string> kinds;
  for (const std::string& path : setup.wrapped) kinds.insert(path.substr(path.rfind('.') + 1));
  std::string names;
  for (const std::string& k : kinds) names += (names.empty() ? "" : ", ") + k;
  const int64_t trainable = model.num_parameters(true), total = model.num_parameters();
  char buf[512];
  std::snprintf(buf, sizeof buf, "adapter: %s r=%ld alpha=%g dropout=%g on %zu modules (%s); trainable %ld of %ld parameters (%.2f%%)%s%s",
                std::string(config::to_string(cfg.adapter.kind)).c_str(), static_cast<long>(setup.settings.r),
                setup.settings.alpha, setup.settings.dropout, setup.wrapped.size(), names.c_str(),
                static_cast<long>(trainable), static_cast<long>(total), 100.0 * trainable / static_cast<double>(total),
                cfg.adapter.lora_model_dir.empty() ? "" : "; continued from ", cfg.adapter.lora_model_dir.c_str());
  return buf;
}

}  // namespace shardlab::cli
