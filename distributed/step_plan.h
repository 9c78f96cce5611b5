// One training step of the data-parallel engine, planned without running it: the bucket layout the
// engine builds (plan_buckets / plan_gather_groups, the very functions it calls), every collective
// of a step in issue order with its tensors and payload bytes, and what each rank holds after each
// phase. `shardlab explain` prints it; a multi-rank test holds it equal to a real step's comm ledger.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "distributed/grad_bucket.h"
#include "distributed/process_group.h"
#include "distributed/sharding_plan.h"
#include "distributed/zero_theory.h"
#include "nn/module.h"

namespace shardlab::dist {

struct PlannedParameter {
  std::string name;
  Shape shape;
  int64_t numel = 0;
};

// The parameters the engine trains, in its order: requires_grad only, a tied tensor once.
std::vector<PlannedParameter> planned_parameters(const nn::NamedTensors& named_parameters);

struct PlannedCollective {
  CollectiveKind kind = CollectiveKind::all_reduce;
  int group_size = 1;
  int64_t payload_bytes = 0;  // as the comm ledger counts it (all_gather: the output, reduce_scatter: the input)
  int64_t wire_bytes = 0;     // what one rank sends under a ring algorithm (ring_wire_bytes)
  std::string tensor;         // what is communicated, in words
  int first_bucket = -1;      // the bucket(s) it carries: [first_bucket, last_bucket); -1: a host scalar
  int last_bucket = -1;
};

// What one rank holds after a phase (bytes; the same on every rank: shards are padded equal).
struct RankHoldings {
  std::string parameters, gradients, optimizer;  // "full", "shard (1/N)", "none", ... ("on the host" when offloaded)
  int64_t parameter_bytes = 0;
  int64_t gradient_bytes = 0;
  int64_t optimizer_bytes = 0;  // fp32 masters + the optimizer's state
  int64_t host_bytes = 0;       // of the three, what offload keeps in pinned host memory
};

// A host<->device copy of offload (core/async_copy.h), asynchronous and overlapped as described.
struct PlannedCopy {
  bool to_device = true;  // false: down to the host
  int64_t bytes = 0;
  std::string tensor;     // what is copied, in words
};

struct StepPhase {
  std::string name;  // "build", "forward + backward", "all-gather", ...
  std::string what;  // one or two sentences
  std::vector<PlannedCollective> collectives;
  RankHoldings after;
  std::vector<PlannedCopy> copies;  // offload only
};

// ZeRO-3 / FSDP units exactly as ShardedUnits builds them (NOTE [sharded units] in fsdp_unit.h):
// the root's own parameters, one unit per wrapped module (outermost type-name match, registration
// order) or one per parameter, and the persistent unit of parameters below the threshold.
struct PlannedUnit {
  std::string name;     // "<root>", the wrapped module's path, a parameter name, or "<persistent>"
  int hook = 0;         // whose forward gathers it: 0 the root, k > 0 the k-th wrapped module; -1 persistent
  BucketLayout layout;  // slots index the planned parameters; padded to the shard group size
};
std::vector<PlannedUnit> plan_units(nn::Module& model, const std::vector<PlannedParameter>& params,
                                    const DataParallelOptions& options, int shard_group_size);

struct StepPlanInput {
  std::vector<PlannedParameter> params;  // planned_parameters(model.named_parameters())
  // The model, for the presets that shard parameters (their units follow its modules); else unused.
  nn::Module* model = nullptr;
  DataParallelOptions options;
  int world_size = 1;
  DType param_dtype = DType::f32;
  OptimizerStateKind optimizer = OptimizerStateKind::adamw;
};

struct StepPlan {
  Preset preset = Preset::ddp;
  int world_size = 1;
  int64_t psi = 0;  // trained elements
  DType param_dtype = DType::f32, reduce_dtype = DType::f32;
  std::vector<BucketLayout> buckets;        // in bucket (issue) order; the units' layouts for zero3/hybrid
  std::vector<PlannedUnit> units;           // zero3 / hybrid_shard only
  int shard_group_size = 1;                 // ranks a bucket or unit is sharded over
  std::vector<BucketRange> gather_groups;   // ZeRO-1/2's all-gathers of updated shards
  std::vector<StepPhase> setup;             // once, when the engine is built
  std::vector<StepPhase> step;              // every optimizer step (one micro batch per rank), steady state
};

// The plan of every preset as DataParallelEngine and the Trainer run it: the Trainer's host-scalar
// all-reduces (token counts, loss, overflow flag, ZeRO's norm) come from its calls into the engine
// (sum_across_ranks, unscale_gradients, clip_grad_norm) and are skipped on one rank, as the engine
// skips them. zero3 / hybrid_shard need input.model. Activation checkpointing changes no collective
// (a layer's recompute runs inside its backward, on the parameters gathered for it); gradient
// accumulation repeats the ZeRO-3 gathers and reduce-scatters per micro batch (not planned here).
StepPlan plan_step(const StepPlanInput& input);

// Calls and payload bytes per collective kind over `phases` (indexed by CollectiveKind): the
// figures a CommLedger shows after the same phases ran.
struct CollectiveTotals {
  int64_t calls = 0;
  int64_t payload_bytes = 0;
};
std::array<CollectiveTotals, 5> collective_totals(const std::vector<StepPhase>& phases);
// Bytes copied up and down by offload over `phases`: {to the device, to the host}.
std::array<int64_t, 2> copy_totals(const std::vector<StepPhase>& phases);

namespace detail {
// The holdings text and the phases of the presets that shard parameters (step_plan_units.cc).
void plan_sharded_step(const StepPlanInput& input, StepPlan& plan);
PlannedCollective planned_collective(CollectiveKind kind, int group_size, int64_t payload, std::string tensor,
                                     int first = -1, int last = -1);
std::string thousands(int64_t n);  // 1234567 -> "1,234,567"
}  // namespace detail

}  // namespace shardlab::dist
