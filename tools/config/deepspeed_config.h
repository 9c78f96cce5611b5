// A DeepSpeed JSON config (`deepspeed: ds.json` in the YAML) merged into the train config, with
// Axolotl's semantics: "auto" takes the YAML's value, a number must agree with it.
#pragma once

#include <string>

#include "tools/config/train_config.h"

namespace shardlab::config {

// What the YAML set explicitly (a DeepSpeed value may fill in a default, but not contradict a choice).
struct ExplicitKeys {
  bool fp16 = false, bf16 = false, gradient_accumulation_steps = false, micro_batch_size = false,
       max_grad_norm = false;
};

// Reads `json_path` and merges it into `config`. Known keys: fp16 {enabled, auto_cast, loss_scale,
// initial_scale_power, loss_scale_window, hysteresis, consecutive_hysteresis, min_loss_scale},
// bf16 {enabled}, gradient_accumulation_steps, gradient_clipping, train_batch_size,
// train_micro_batch_size_per_gpu, communication_data_type, zero_optimization (stage 0 here; 1-3 arrive with the
// distributed issues and are "not supported yet"), steps_per_print, wall_clock_breakdown.
// Errors name the JSON file and the key; contradictions name both the JSON and the YAML key.
void merge_deepspeed_config(const std::string& json_path, const ExplicitKeys& explicit_keys, TrainConfig& config);

}  // namespace shardlab::config
