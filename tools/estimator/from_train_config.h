// The estimator's inputs read from a `shardlab train` YAML config: the model it trains (only
// config.json of base_model is read) and the recipe (precision, optimizer, adapter, batch).
#pragma once

#include <string>

#include "tools/config/train_config.h"
#include "tools/estimator/estimate_setup.h"

namespace shardlab::estimate {

models::LlamaConfig model_config_of(const config::TrainConfig& cfg, const std::string& path);

// The per-rank estimate setup the train config describes, for `preset` over `world` ranks.
EstimateSetup setup_from_config(const config::TrainConfig& cfg, const models::LlamaConfig& mc, dist::Preset preset,
                                int world, int hybrid_group, bool offload_optimizer, bool offload_params,
                                int64_t bucket_elements, int prefetch_depth);

}  // namespace shardlab::estimate
