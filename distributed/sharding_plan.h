// What a data-parallel strategy shards (optimizer state, gradients, parameters), the named presets
// that map onto it (DDP, ZeRO-1, ZeRO-2 and their FSDP aliases), and the engine's options.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/dtype.h"

namespace shardlab::dist {

// The strategies the engine runs today. Aliases parse onto these: fsdp_no_shard -> ddp,
// fsdp_shard_grad_op -> zero2. zero3 / fsdp_full_shard / fsdp_hybrid_shard are parsed only to
// say clearly that they are not supported yet.
enum class Preset { ddp, zero1, zero2 };

const char* preset_name(Preset preset);  // "ddp", "zero1", "zero2"
// Accepts ddp, zero1, zero2, fsdp_no_shard, fsdp_shard_grad_op (case-sensitive); anything else is
// an error naming `text` (the ZeRO-3 family gets "not supported yet (Distributed II)").
Preset parse_preset(const std::string& text);
// DeepSpeed's zero_optimization.stage: 0 -> ddp, 1 -> zero1, 2 -> zero2, 3 -> not supported yet.
Preset preset_from_zero_stage(int64_t stage);

// A point in the sharding space (see DESIGN.md's preset table).
struct ShardingPlan {
  bool shard_optimizer_state = false;  // each rank keeps optimizer state (and fp32 masters) for 1/N
  bool shard_gradients = false;        // reduce-scatter: each rank keeps 1/N of the reduced gradients
  bool shard_parameters = false;       // ZeRO-3 (not supported yet; always false)

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
  // Record the engine's events (hook fired, bucket issued, bucket finished) for inspection and
  // tests. Observation only: recording never changes what runs or when.
  bool record_events = false;
};

// Checks the options (positive bucket sizes, contiguous_gradients) and names the bad one.
void validate(const DataParallelOptions& options);

}  // namespace shardlab::dist
