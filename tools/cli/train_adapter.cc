// LoRA/QLoRA setup for `shardlab train` (see train_adapter.h).
#include "tools/cli/train_adapter.h"

#include <cstdio>
#include <set>

#include "models/peft_adapter.h"

namespace shardlab::cli {

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
  SL_CHECK(cfg.adapter.kind != config::AdapterKind::qlora,
           "adapter qlora: training on a 4-bit NF4 base is not wired into shardlab train yet (use adapter: lora)");
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
