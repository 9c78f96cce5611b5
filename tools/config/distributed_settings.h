// The data-parallel settings of a train config: the ZeRO stage and DeepSpeed's zero_optimization
// knobs, filled from `deepspeed: ds.json` (names and defaults as DeepSpeed's zero/config.py).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace shardlab::config {

// DeepSpeed's offload_optimizer / offload_param `device`.
enum class OffloadDevice { none, cpu, nvme };
std::string_view to_string(OffloadDevice v);

// Hugging Face's / Axolotl's ddp_backend: which library runs collectives on GPU tensors. auto: NCCL
// when every rank has its own GPU and the build has NCCL, else MPI through host copies.
enum class DdpBackend { automatic, nccl, mpi };
std::string_view to_string(DdpBackend v);

struct OffloadSettings {
  OffloadDevice device = OffloadDevice::none;
  bool pin_memory = false;

  bool operator==(const OffloadSettings&) const = default;
};

struct DistributedSettings {
  // DeepSpeed's zero_optimization.stage: 0 DDP, 1 sharded optimizer state, 2 + sharded gradients,
  // 3 + sharded parameters (trained when the engine has the zero3 preset).
  int64_t zero_stage = 0;
  // Stage 0-2 knobs. Bucket sizes count elements, as DeepSpeed's do. nullopt: "auto", resolved at
  // startup from the model's hidden size (Hugging Face's rule: hidden_size^2).
  bool overlap_comm = false;          // reduce gradient buckets while backward still runs
  bool contiguous_gradients = true;   // copy gradients into one flat buffer as they are produced
  bool reduce_scatter = true;         // stage 2: reduce-scatter (false: all-reduce, keep own shard)
  std::optional<int64_t> reduce_bucket_size = 500'000'000;
  bool allgather_partitions = true;   // all-gather updated shards (false: one broadcast per rank)
  int64_t allgather_bucket_size = 500'000'000;
  bool round_robin_gradients = false; // an offload-only ordering of gradient partitions

  // Stage 3 and offload (offload is rejected at startup: the model lives on the CPU in this build).
  // nullopt: "auto" (prefetch 0.9 x hidden_size^2, persistence 10 x hidden_size).
  int64_t sub_group_size = 1'000'000'000;
  std::optional<int64_t> stage3_prefetch_bucket_size = 50'000'000;
  std::optional<int64_t> stage3_param_persistence_threshold = 100'000;
  int64_t stage3_max_live_parameters = 1'000'000'000;
  int64_t stage3_max_reuse_distance = 1'000'000'000;
  bool stage3_gather_16bit_weights_on_model_save = false;
  OffloadSettings offload_optimizer;
  OffloadSettings offload_param;

  // DeepSpeed's train_batch_size when it is a number (not "auto"): at startup it must equal
  // micro_batch_size x gradient_accumulation_steps x world size (see check_distributed_runtime).
  std::optional<int64_t> train_batch_size;
  // Axolotl's and Hugging Face's ddp_timeout: a collective that takes longer fails (seconds).
  int64_t ddp_timeout_seconds = 1800;
  DdpBackend ddp_backend = DdpBackend::automatic;

  bool operator==(const DistributedSettings&) const = default;
};

}  // namespace shardlab::config
