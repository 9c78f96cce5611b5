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
// train_micro_batch_size_per_gpu, communication_data_type, steps_per_print, wall_clock_breakdown,
// zero_allow_untested_optimizer, zero_force_ds_cpu_optimizer, and zero_optimization (stages 0-3
// with DeepSpeed's keys, into config.distributed; see parse_zero_optimization in the .cc).
// Errors name the JSON file and the key; contradictions name both the JSON and the YAML key.
// train_batch_size is kept, not checked: it needs the world size (check_distributed_runtime).
void merge_deepspeed_config(const std::string& json_path, const ExplicitKeys& explicit_keys, TrainConfig& config);

// What only startup knows: the number of ranks (after init_process_group) and the model.
struct RuntimeShape {
  int64_t world_size = 1;
  int64_t hidden_size = 0;  // for "auto" bucket sizes
};

// The startup checks and resolution of config.distributed, on every rank alike:
//   - train_batch_size (when a number) must equal micro_batch_size x gradient_accumulation_steps x
//     world size; the error names both keys and the three factors;
//   - "auto" bucket sizes become numbers (reduce_bucket_size hidden_size^2, stage 3's prefetch
//     0.9 x hidden_size^2 and persistence threshold 10 x hidden_size, as Hugging Face resolves them);
//   - CPU/NVMe offload (DeepSpeed's offload_* and FSDP's offload_params) is an error naming the key:
//     the model lives on the CPU in this build, so there is nothing to offload; ZeRO-3 is left to
//     the engine's preset (dist::preset_from_zero_stage);
//   - FSDP: hybrid_shard_group_size must divide the world size, cpu_ram_efficient_loading needs a
//     model whose every weight is broadcast (no adapter) and sync_module_states;
//   - reduce_scatter, allgather_partitions and contiguous_gradients false (paths the engine does not
//     have) and round_robin_gradients true (an offload ordering) are errors naming the key.
// Returns the settings with nothing left "auto".
DistributedSettings check_distributed_runtime(const TrainConfig& config, const RuntimeShape& shape);

}  // namespace shardlab::config
