// Planning one data-parallel step from the engine's own layout functions (see step_plan.h).
#include "distributed/step_plan.h"

#include <cmath>
#include <unordered_set>

#include "core/error.h"
#include "distributed/comm_ledger.h"

namespace shardlab::dist {

namespace {

bool is_16bit(DType t) { return t == DType::bf16 || t == DType::f16; }

std::string count(int64_t n) { return detail::thousands(n); }

PlannedCollective collective(CollectiveKind kind, int world, int64_t payload, std::string tensor, int first = -1,
                             int last = -1) {
  return detail::planned_collective(kind, world, payload, std::move(tensor), first, last);
}

// A host scalar summed across ranks (DataParallelEngine::sum_across_ranks: f64, none on one rank).
void add_scalar_sum(std::vector<PlannedCollective>& out, int world, int values, const std::string& what) {
  if (world > 1) out.push_back(collective(CollectiveKind::all_reduce, world, 8 * values, what));
}

}  // namespace

std::string detail::thousands(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

PlannedCollective detail::planned_collective(CollectiveKind kind, int group_size, int64_t payload, std::string tensor,
                                             int first, int last) {
  return {kind, group_size, payload, ring_wire_bytes(kind, payload, group_size), std::move(tensor), first, last};
}

std::vector<PlannedParameter> planned_parameters(const nn::NamedTensors& named_parameters) {
  std::vector<PlannedParameter> out;
  std::unordered_set<const TensorImpl*> seen;  // the engine keeps a tied tensor once
  for (const auto& [name, t] : named_parameters)
    if (t.requires_grad() && seen.insert(t.impl()).second) out.push_back({name, t.shape(), t.numel()});
  return out;
}

StepPlan plan_step(const StepPlanInput& in) {
  const DataParallelOptions& o = in.options;
  validate(o);
  SL_CHECK(in.world_size >= 1, "step plan: world size must be >= 1, got ", in.world_size);
  SL_CHECK(!in.params.empty(), "step plan: the model has no trainable parameters");
  const ShardingPlan sharding = ShardingPlan::of(o.preset);
  const int world = in.world_size;
  StepPlan plan;
  plan.preset = o.preset;
  plan.world_size = world;
  plan.shard_group_size = world;
  plan.param_dtype = in.param_dtype;
  plan.reduce_dtype = o.reduce_dtype.value_or(in.param_dtype);
  if (sharding.shard_parameters) {
    detail::plan_sharded_step(in, plan);
    return plan;
  }
  std::vector<int64_t> numels;
  for (const PlannedParameter& p : in.params) {
    numels.push_back(p.numel);
    plan.psi += p.numel;
  }
  plan.buckets = plan_buckets(numels, o.reduce_bucket_size, world);
  if (sharding.shard_optimizer_state) plan.gather_groups = plan_gather_groups(plan.buckets, o.allgather_bucket_size, world);

  const int64_t pbytes = dtype_size(in.param_dtype), rbytes = dtype_size(plan.reduce_dtype);
  int64_t padded = 0, shard = 0;
  for (const BucketLayout& b : plan.buckets) {
    padded += b.padded_numel;
    shard += b.shard_numel;
  }
  const std::string n = std::to_string(world);
  const int64_t own = sharding.shard_optimizer_state ? shard : padded;  // what this rank's optimizer steps
  // Offload keeps fp32 masters even of f32 parameters (they live on the host, the parameters not).
  const bool masters = is_16bit(in.param_dtype) || o.offload_optimizer;
  const std::string host = o.offload_optimizer ? ", on the host" : "";
  const std::string param_name(dtype_name(in.param_dtype)), reduce_name(dtype_name(plan.reduce_dtype));
  const auto bucket_words = [&](int b, const char* what) {
    const BucketLayout& L = plan.buckets[b];
    return "bucket " + std::to_string(b) + " " + what + " (" + std::to_string(L.slots.size()) + " parameters, " +
           count(L.numel) + " elements padded to " + count(L.padded_numel) + ")";
  };

  // What every rank holds between steps: the whole model, the persistent gradient buffer (whole, or
  // this rank's shard for ZeRO-2), and its masters and optimizer state (whole for DDP, else 1/N).
  RankHoldings held;
  held.parameters = "full (" + param_name + ")";
  held.parameter_bytes = padded * pbytes;
  held.gradients = sharding.shard_gradients ? "own shard (1/" + n + ", " + reduce_name + ")" : "full buffer (" + reduce_name + ")";
  held.gradient_bytes = (sharding.shard_gradients ? shard : padded) * rbytes;
  const std::string own_words = sharding.shard_optimizer_state ? "own shard (1/" + n + ")" : "full";
  held.optimizer = masters ? "fp32 masters, " + own_words + host : "none yet (created by the first step)";
  held.optimizer_bytes = masters ? own * 4 : 0;
  held.host_bytes = o.offload_optimizer ? held.optimizer_bytes : 0;

  // From the first step on, the optimizer's state exists too: a steady-state step holds it throughout.
  RankHoldings working = held;
  working.optimizer = (masters ? "fp32 masters + " : std::string()) + "optimizer state, " + own_words + host;
  working.optimizer_bytes = static_cast<int64_t>(std::llround(optimizer_bytes_per_param(in.optimizer, masters) * own));
  working.host_bytes = o.offload_optimizer ? working.optimizer_bytes : 0;
  // offload_optimizer: each bucket's reduced gradient goes down as its collective finishes, and its
  // updated shard (rounded on the host) goes up before the all-gather.
  const auto offload_copies = [&](bool up) {
    std::vector<PlannedCopy> copies;
    if (!o.offload_optimizer) return copies;
    for (int b = 0; b < static_cast<int>(plan.buckets.size()); ++b) {
      const int64_t n_own = sharding.shard_optimizer_state ? plan.buckets[b].shard_numel : plan.buckets[b].padded_numel;
      copies.push_back({up, n_own * (up ? pbytes : rbytes), bucket_words(b, up ? "updated parameter shard" : "reduced gradient shard")});
    }
    return copies;
  };

  StepPhase build{"build", "", {}, held};
  build.what = "The " + count(plan.psi) + " trained elements are copied into " + std::to_string(plan.buckets.size()) +
               " flat bucket buffer(s), filled in reverse registration order, each padded to a multiple of " + n +
               " and cut into " + n + " equal shards; every parameter becomes a view of its bucket.";
  if (o.broadcast_initial_parameters) {
    build.what += " Rank 0's values are broadcast so every rank starts equal.";
    for (int b = 0; b < static_cast<int>(plan.buckets.size()); ++b)
      build.collectives.push_back(collective(CollectiveKind::broadcast, world, plan.buckets[b].padded_numel * pbytes,
                                             bucket_words(b, "parameters"), b, b + 1));
  }
  plan.setup.push_back(build);

  StepPhase tokens{"count tokens", "Each rank counts the target and input tokens of its micro batches; the global "
                                   "counts divide every rank's loss, so N ranks equal one process.", {}, working};
  add_scalar_sum(tokens.collectives, world, 2, "token counts (2 x f64)");
  plan.step.push_back(tokens);

  // The bucket collectives: issued from the gradient-ready hooks during backward (overlap_comm),
  // or all after backward by wait_for_gradients().
  std::vector<PlannedCollective> reduce;
  for (int b = 0; b < static_cast<int>(plan.buckets.size()); ++b) {
    const int64_t payload = plan.buckets[b].padded_numel * rbytes;
    if (o.preset == Preset::ddp)
      reduce.push_back(collective(CollectiveKind::all_reduce, world, payload, bucket_words(b, "gradients"), b, b + 1));
    else
      reduce.push_back(collective(CollectiveKind::reduce_scatter, world, payload, bucket_words(b, "gradients"), b, b + 1));
  }
  const std::string reduce_words =
      o.preset == Preset::ddp   ? "each bucket's gradients are all-reduced (summed) in place: every rank keeps all of them."
      : o.preset == Preset::zero1 ? "each bucket's gradients are reduce-scattered; rank r writes its summed shard r back "
                                    "into its (full-size) gradient buffer."
                                  : "each bucket's gradients are reduce-scattered into the rank's persistent 1/" + n +
                                        " shard; the full-size bucket buffer is transient and freed once done.";
  StepPhase backward{"forward + backward", "", {}, working};
  backward.what = "Gradients arrive last layer first and are copied into their bucket (the parameter's .grad is "
                  "released); " + std::string(o.overlap_comm ? "as soon as a bucket is full, in bucket order, " : "") +
                  reduce_words;
  if (o.overlap_comm) backward.collectives = reduce;
  else backward.what += " With overlap_comm off, the collectives wait until after backward.";
  if (o.offload_optimizer) {
    backward.what += " Offload: each reduced shard starts down to the host as soon as its collective is done.";
    backward.copies = offload_copies(false);
  }
  plan.step.push_back(backward);

  StepPhase loss{"sum the loss", "The step's loss for logging: every rank's token-loss sum, added.", {}, working};
  add_scalar_sum(loss.collectives, world, 1, "loss sum (f64)");
  plan.step.push_back(loss);
  if (!o.overlap_comm)
    plan.step.push_back({"wait for gradients", "overlap_comm off: every bucket's collective is issued now. " + reduce_words,
                         reduce, working});

  StepPhase unscale{"unscale + overflow", "Each rank hands its reduced gradients" +
                                              std::string(masters ? " (as fp32)" : "") +
                                              " to its optimizer and checks them for inf/NaN; one flag, summed, makes "
                                              "every rank skip an overflowing fp16 step together.", {}, working};
  add_scalar_sum(unscale.collectives, world, 1, "overflow flag (f64)");
  plan.step.push_back(unscale);

  StepPhase clip{"gradient norm", "", {}, working};
  if (sharding.shard_optimizer_state) {
    clip.what = "Each rank sums the squares of its gradient shard; the sums are added across ranks for the global norm.";
    add_scalar_sum(clip.collectives, world, 1, "sum of squared gradients (f64)");
  } else {
    clip.what = "Every rank holds all reduced gradients, so the global norm needs no communication.";
  }
  plan.step.push_back(clip);

  StepPhase opt{"optimizer step", "Each rank's optimizer steps " +
                                      std::string(sharding.shard_optimizer_state ? "only its shard of every bucket"
                                                                                 : "every bucket whole") +
                                      (o.offload_optimizer ? " on the host (multithreaded AdamW), then the updated "
                                                             "values go up to the device while the next bucket is rounded"
                                                           : "") +
                                      " (no communication).", {}, working};
  opt.copies = offload_copies(true);
  plan.step.push_back(opt);

  if (sharding.shard_optimizer_state) {
    StepPhase gather{"all-gather parameters", "", {}, working};
    gather.what = "Each rank's updated shards are written into the model" + std::string(masters ? " (rounded from the fp32 masters)" : "") +
                  " and all-gathered, consecutive buckets together up to allgather_bucket_size, so every rank holds the "
                  "whole updated model again.";
    for (const BucketRange& r : plan.gather_groups) {
      int64_t chunk = 0;
      for (int b = r.first; b < r.last; ++b) chunk += plan.buckets[b].shard_numel;
      gather.collectives.push_back(collective(CollectiveKind::all_gather, world, chunk * world * pbytes,
                                              "buckets " + std::to_string(r.first) + ".." + std::to_string(r.last - 1) +
                                                  " parameters (" + count(chunk) + " elements per rank)",
                                              r.first, r.last));
    }
    plan.step.push_back(gather);
  }
  return plan;
}

std::array<int64_t, 2> copy_totals(const std::vector<StepPhase>& phases) {
  std::array<int64_t, 2> t{};
  for (const StepPhase& p : phases)
    for (const PlannedCopy& c : p.copies) t[c.to_device ? 0 : 1] += c.bytes;
  return t;
}

std::array<CollectiveTotals, 5> collective_totals(const std::vector<StepPhase>& phases) {
  std::array<CollectiveTotals, 5> t{};
  for (const StepPhase& p : phases)
    for (const PlannedCollective& c : p.collectives) {
      t[static_cast<int>(c.kind)].calls += 1;
      t[static_cast<int>(c.kind)].payload_bytes += c.payload_bytes;
    }
  return t;
}

}  // namespace shardlab::dist
