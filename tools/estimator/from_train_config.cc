// Reads the estimator's model and recipe out of a train config, as `train` builds them.
#include "tools/estimator/from_train_config.h"

#include <filesystem>

#include "models/byte_tokenizer.h"
#include "models/llama_io.h"
#include "models/tokenizer.h"
#include "tools/cli/llama_from_config.h"

namespace shardlab::estimate {

namespace fs = std::filesystem;

namespace {

// The vocabulary size a model_config without vocab_size gets: the tokenizer's, as in `train`.
int64_t tokenizer_vocab(const config::TrainConfig& cfg) {
  if (cfg.tokenizer == "byte") return models::ByteTokenizer().vocab_size();
  fs::path path = fs::path(cfg.tokenizer);
  if (path.filename() == "tokenizer.json") path = path.parent_path();
  return models::load_tokenizer(path.string())->vocab_size();
}

}  // namespace

// The model the config trains: only config.json of base_model is read (weights do not change bytes).
models::LlamaConfig model_config_of(const config::TrainConfig& cfg, const std::string& path) {
  if (!cfg.base_model.empty()) return models::load_llama_config(cfg.base_model);
  SL_CHECK(cfg.model_config.has_value(), path, ": needs base_model or model_config");
  const int64_t vocab = cfg.model_config->vocab_size.has_value() ? *cfg.model_config->vocab_size : tokenizer_vocab(cfg);
  return cli::llama_config_from(*cfg.model_config, vocab);
}

EstimateSetup setup_from_config(const config::TrainConfig& cfg, const models::LlamaConfig& mc,
                                dist::Preset preset, int world, int hybrid_group, bool offload_optimizer,
                                bool offload_params, int64_t bucket_elements, int prefetch_depth) {
  EstimateSetup s;
  s.model = mc;
  s.precision = cfg.bf16 == config::Toggle::on   ? Precision::bf16_masters
                : cfg.fp16 == config::Toggle::on ? Precision::fp16_masters
                                                 : Precision::f32;
  s.optimizer = cfg.optimizer == config::OptimizerKind::adamw_8bit ? OptimizerKind::adamw_8bit
                : cfg.optimizer == config::OptimizerKind::sgd      ? OptimizerKind::sgd
                                                                   : OptimizerKind::adamw;
  s.adapter = cfg.adapter.kind == config::AdapterKind::lora    ? AdapterKind::lora
              : cfg.adapter.kind == config::AdapterKind::qlora ? AdapterKind::qlora
                                                          : AdapterKind::none;
  s.lora_r = cfg.adapter.lora_r;
  if (!cfg.adapter.lora_target_linear) s.lora_targets = cfg.adapter.lora_target_modules;
  s.gradient_checkpointing = cfg.gradient_checkpointing;
  s.micro_batch_size = cfg.micro_batch_size;
  s.sequence_len = cfg.sequence_len;
  s.preset = preset;
  s.world_size = world;
  s.hybrid_group_size = hybrid_group;
  s.offload_optimizer = offload_optimizer;
  s.offload_params = offload_params;
  s.bucket_elements = bucket_elements;
  s.prefetch_depth = prefetch_depth;
  return s;
}

}  // namespace shardlab::estimate
