// The data-parallel engine's options from a train config: the preset from DeepSpeed's ZeRO stage or
// FSDP's sharding strategy, and each side's knobs mapped onto dist::DataParallelOptions. Shared by
// `shardlab train` (what runs) and `shardlab explain` (what it prints), so the two cannot differ.
#pragma once

#include <string>

#include "distributed/sharding_plan.h"
#include "tools/config/train_config.h"

namespace shardlab::cli {

// `ds` is config::check_distributed_runtime()'s result (nothing "auto" left). Without a DeepSpeed
// or FSDP block the engine's defaults apply (preset ddp). DeepSpeed: stage -> ddp/zero1/zero2/zero3,
// reduce/all-gather bucket sizes, overlap_comm, stage3_prefetch_bucket_size and
// stage3_param_persistence_threshold, and ZeRO-3's per-parameter units. FSDP: strategy ->
// fsdp_no_shard/fsdp_shard_grad_op/fsdp_full_shard/fsdp_hybrid_shard, decoder-layer units
// (TRANSFORMER_BASED_WRAP; SIZE_BASED_WRAP and no wrap at all are errors for the presets that shard
// parameters), forward/backward prefetch, sync_module_states as the initial broadcast, and the
// hybrid group size. Offload: DeepSpeed's offload_optimizer / offload_param (device cpu) and FSDP's
// offload_params (which, like FSDP's CPUOffload, also puts the optimizer on the host). Errors name the key.
dist::DataParallelOptions data_parallel_options(const config::TrainConfig& cfg, const config::DistributedSettings& ds,
                                                int world_size);

// One line for the run's header: preset, buckets, prefetch and units as they will run.
std::string describe(const dist::DataParallelOptions& options, int world_size);

}  // namespace shardlab::cli
