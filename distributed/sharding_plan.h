// What a data-parallel strategy shards (optimizer state, gradients, parameters), the named presets
// that map onto it (DDP, ZeRO-1/2/3, hybrid sharding and their FSDP aliases), and the engine's options.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace shardlab::dist {

// The strategies the engine runs. Aliases parse onto these: fsdp_no_shard -> ddp,
// fsdp_shard_grad_op -> zero2, fsdp_full_shard -> zero3. hybrid_shard is FSDP's HYBRID_SHARD:
// ZeRO-3 inside a group of hybrid_shard_group_size ranks, replicated across the groups.
enum class Preset { ddp, zero1, zero2, zero3, hybrid_shard };

const char* preset_name(Preset preset);  // "ddp", "zero1", "zero2", "zero3", "fsdp_hybrid_shard"
// Accepts ddp, zero1, zero2, zero3, fsdp_no_shard, fsdp_shard_grad_op, fsdp_full_shard,
// fsdp_hybrid_shard, hybrid_shard (case-sensitive); anything else is an error naming `text`.
Preset parse_preset(const std::string& text);
// DeepSpeed's zero_optimization.stage: 0 -> ddp, 1 -> zero1, 2 -> zero2, 3 -> zero3.
Preset preset_from_zero_stage(int64_t stage);
// The presets that shard parameters (gathered per unit, freed after use).
inline bool shards_parameters(Preset preset) { return preset == Preset::zero3 || preset == Preset::hybrid_shard; }

// Which parameters are fetched together (ZeRO-3 / FSDP units).
//   decoder_layer: every module whose type_name() is in transformer_layer_cls_to_wrap is a unit
//                  (FSDP's transformer auto-wrap); the rest of the model is one root unit.
//   per_parameter: every trained parameter is its own unit (ZeRO-3's per-parameter fetching).
enum class WrapPolicy { decoder_layer, per_parameter };
const char* wrap_policy_name(WrapPolicy wrap);
WrapPolicy parse_wrap_policy(const std::string& text);  // "decoder_layer", "per_parameter"

// When a unit's all-gather for backward is issued (FSDP's backward_prefetch).
//   backward_pre:  the previous unit's gather is issued when a unit's backward starts.
//   backward_post: it is issued when a unit's backward has finished (its gradients reduced).
//   none:          each unit is gathered only when its backward needs it.
enum class BackwardPrefetch { backward_pre, backward_post, none };
const char* backward_prefetch_name(BackwardPrefetch prefetch);
// "backward_pre", "backward_post", "none" (and FSDP's spellings BACKWARD_PRE, BACKWARD_POST, NO_PREFETCH).
BackwardPrefetch parse_backward_prefetch(const std::string& text);

// A point in the sharding space (see DESIGN.md's preset table).
struct ShardingPlan {
  bool shard_optimizer_state = false;  // each rank keeps optimizer state (and fp32 masters) for 1/N
  bool shard_gradients = false;        // reduce-scatter: each rank keeps 1/N of the reduced gradients
  bool shard_parameters = false;       // ZeRO-3: parameters gathered per unit for use, freed after
  bool replicate_across_groups = false;  // hybrid: all of the above within a group, replicated across groups

  static ShardingPlan of(Preset preset);
  bool operator==(const ShardingPlan&) const = default;
};

// The engine's knobs, named after DeepSpeed's zero_optimization keys where one exists.
struct DataParallelOptions {
  Preset preset = Preset::ddp;
  // Elements per gradient bucket (DeepSpeed's reduce_bucket_size, default 5e8). A bucket's
  // collective starts as soon as all of its gradients are ready; a parameter larger than the
  // bucket size gets a bucket of its own.
  int64_t reduce_bucket_size = 500000000;
  // Elements per all-gather of updated parameters (ZeRO-1/2; DeepSpeed's allgather_bucket_size):
  // consecutive buckets are gathered together up to this size (at least one bucket per call).
  int64_t allgather_bucket_size = 500000000;
  // true: each bucket's collective is issued from the gradient-ready hooks while backward still
  // runs; false: every collective is issued after backward (same results, no overlap).
  bool overlap_comm = true;
  // Gradients are always copied into contiguous bucket buffers; false is rejected (there is no
  // non-contiguous path), so a DeepSpeed config asking for it gets an error, not a silent change.
  bool contiguous_gradients = true;
  // The dtype gradients are reduced in; unset: the parameters' dtype (as DeepSpeed and FSDP2).
  std::optional<DType> reduce_dtype;
  // Copy rank 0's parameters to every rank when the engine is built (DDP's initial broadcast).
  bool broadcast_initial_parameters = true;
  // ---- ZeRO-3 / FSDP full and hybrid sharding (zero3, hybrid_shard) ----
  // hybrid_shard: ranks per shard group (FSDP shards within a node); consecutive ranks form a group
  // and the groups replicate each other. Must divide the world size; 0: the whole world is one
  // group (a single node), which makes hybrid_shard run as zero3.
  int hybrid_shard_group_size = 0;
  WrapPolicy wrap = WrapPolicy::decoder_layer;
  // Module type names that become units under WrapPolicy::decoder_layer (FSDP's
  // fsdp_transformer_layer_cls_to_wrap).
  std::vector<std::string> transformer_layer_cls_to_wrap = {"LlamaDecoderLayer"};
  // Elements of parameters whose all-gathers may be in flight ahead of use (DeepSpeed's
  // stage3_prefetch_bucket_size): at least the next unit is always prefetched when prefetch is on.
  int64_t prefetch_bucket_size = 50000000;
  // Forward: issue the next unit's all-gather before running a unit's forward (FSDP's forward_prefetch).
  bool forward_prefetch = true;
  BackwardPrefetch backward_prefetch = BackwardPrefetch::backward_pre;
  // Parameters with fewer elements than this are not sharded per unit: they stay gathered on every
  // rank (their gradients still reduce-scattered, their optimizer state sharded) and are re-gathered
  // after each step (DeepSpeed's stage3_param_persistence_threshold). 0: none.
  int64_t param_persistence_threshold = 0;

  // ZeRO-Offload (DeepSpeed's offload_optimizer: cpu): the fp32 master shards and the optimizer
  // state live on the CPU and the optimizer steps there; each step the reduced gradient shard is
  // copied down and the updated shard copied back up. For parameters on a GPU; every preset.
  bool offload_optimizer = false;
  // ZeRO-Infinity's offload_param: cpu / FSDP's CPUOffload(offload_params=True), zero3 and
  // hybrid_shard only: each unit's parameter shard and gradient shard live on the CPU and are
  // copied to the device for the unit's all-gather (and so ride its prefetch), and each reduced
  // gradient shard is copied down. It implies offload_optimizer (as FSDP's CPUOffload: the
  // optimizer steps where the shards are). Only gathered units occupy device memory.
  bool offload_param = false;

  // Record the engine's events (hook fired, bucket issued, bucket finished) for inspection and
  // tests. Observation only: recording never changes what runs or when.
  bool record_events = false;
};

// Checks the options (positive bucket sizes, contiguous_gradients) and names the bad one.
void validate(const DataParallelOptions& options);

}  // namespace shardlab::dist
