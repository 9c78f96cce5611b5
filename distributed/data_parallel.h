// The data-parallel engine: DDP, ZeRO-1 and ZeRO-2 over one bucketed, overlapped gradient path,
// and ZeRO-3 / FSDP full and hybrid sharding over per-unit flat shards (fsdp_unit.h).
//
// Usage (what tools/trainer/trainer.cc does each optimizer step; make_data_parallel() in
// distributed/data_parallel_setup.h builds engine + optimizer + loss scaler in one call):
//
//   dist::DataParallelEngine engine(model.parameters(), group, options);  // frozen params skipped
//   nn::AdamW opt(engine.optimizer_params(), lr);      // flat per-bucket shards (fp32 masters for 16-bit)
//   engine.zero_grad();
//   for (micro batch i of k) {
//     engine.set_gradient_sync(i == k - 1);            // communicate only on the final micro batch
//     backward(loss_i / global_target_tokens);         // buckets' collectives start from the hooks
//   }
//   engine.wait_for_gradients();                       // reduced gradients in place
//   bool overflow = engine.unscale_gradients(1 / loss_scale);  // decided across ranks
//   double norm = engine.clip_grad_norm(max_norm);     // global norm across shards
//   opt.step();                                        // each rank steps its shard
//   engine.update_parameters();                        // masters -> model, all-gather (ZeRO-1/2)
//
// NOTE [engine layout]: the trained parameters are grouped into buckets (grad_bucket.h) and each
// parameter is rebound to a view of its bucket's flat parameter buffer, so an all-gather writes
// the model in place. Rank r owns shard r of every bucket. Per preset:
//   ddp:   the bucket's gradient buffer (persistent, MemTag::gradient) is all-reduced; every rank
//          steps the whole bucket.
//   zero1: the same persistent gradient buffer is reduce-scattered (the ZeRO paper's 2 psi of
//          traffic, as DeepSpeed stage 1) and rank r's reduced shard is written back into its part
//          of it; rank r steps shard r and the updated shards are all-gathered.
//   zero2: the full-size gradient buffer is a transient communication buffer, freed once the
//          reduce-scatter into the persistent shard buffer (1/N) is done.
//   zero3, hybrid_shard: built from the model (the Module constructor); the buckets are the
//          sharded units (NOTE [sharded units] in fsdp_unit.h): parameters live as 1/N shards and
//          are gathered per unit around its forward and backward. Every micro batch's backward
//          reduce-scatters (set_gradient_sync is ignored: as DeepSpeed stage 3, full-size gradients
//          exist only inside a unit's backward). Reading or writing the model's trained parameters
//          outside a forward needs gather_full_parameters() ... free_full_parameters().
// Gradients are summed across ranks, never averaged: the caller divides each rank's loss by the
// GLOBAL target-token count, which makes N ranks equal to one process on the global batch.
#pragma once

#include <memory>
#include <vector>

#include "core/async_copy.h"
#include "core/tensor.h"
#include "distributed/fsdp_unit.h"
#include "distributed/grad_bucket.h"
#include "distributed/process_group.h"
#include "distributed/sharding_plan.h"
#include "distributed/zero_theory.h"
#include "nn/module.h"
#include "nn/optimizer.h"

namespace shardlab::dist {

// What the engine did, in order (recorded only with DataParallelOptions::record_events).
struct EngineEvent {
  enum Kind {
    grad_ready, bucket_issued, bucket_reduced, parameters_gathered,
    // sharded units (zero3, hybrid_shard): index is the unit (bucket) for gathers and frees, the
    // hook point (0: the root, then the wrapped modules in order) for forward and backward.
    unit_gather_issued, unit_gathered, unit_freed, unit_forward_begin, unit_forward_end, unit_backward_begin
  } kind;
  int index;  // grad_ready: parameter index; bucket_*: bucket index; parameters_gathered: -1 (or unit)
};

// Which elements of one trained parameter this rank owns (its optimizer shard), for sharded
// checkpoints: `numel` elements starting at `param_offset` of the flattened parameter live at
// `bucket_offset` of bucket `bucket`'s flat buffer (see BucketLayout).
struct OwnedRange {
  int bucket = 0;
  int64_t bucket_offset = 0;
  int64_t param_offset = 0;
  int64_t numel = 0;
};
struct ParameterShard {
  int param = 0;     // index in registration order of the trained parameters
  std::string name;  // dotted name (empty when the engine was built from a parameter list)
  Shape shape;       // global shape
  std::vector<OwnedRange> owned;  // in parameter order; empty when this rank owns none of it
};

class DataParallelEngine {
 public:
  // `params`: the model's parameters; those without requires_grad (frozen base weights, NF4
  // weights under LoRA/QLoRA) are left alone: not bucketed, reduced, sharded, or stepped.
  // Parameters may be f32, bf16 or f16 (one dtype for all); 16-bit ones get fp32 master shards.
  // Collective: every rank must build its engine with the same parameter shapes and options.
  // Build it last (after dtype conversion, LoRA/QLoRA, loading): it rebinds the trained parameters
  // to its flat buffers, and broadcasts them from rank 0 (frozen ones are not broadcast: every rank
  // loads them from the same checkpoint).
  // Not for zero3 / hybrid_shard, which need the model's modules.
  DataParallelEngine(const std::vector<Tensor>& params, ProcessGroup& group, DataParallelOptions options);
  // Every preset; zero3 / hybrid_shard hook the model's wrapped modules (kept alive by the caller).
  DataParallelEngine(nn::Module& model, ProcessGroup& group, DataParallelOptions options);
  ~DataParallelEngine();
  DataParallelEngine(const DataParallelEngine&) = delete;
  DataParallelEngine& operator=(const DataParallelEngine&) = delete;

  // The tensors to hand to an optimizer: one flat 1-D tensor per bucket holding this rank's shard
  // (DDP: the whole bucket): fp32 masters (MemTag::optimizer_state) for 16-bit parameters, views
  // of the flat parameter buffers for f32 ones.
  const std::vector<Tensor>& optimizer_params() const { return units_ ? units_->optimizer_params() : stepped_; }

  // Drops every gradient (model parameters and optimizer_params) before a step's micro batches.
  void zero_grad();
  // true before the backward of a step's final micro batch: its grad-ready hooks copy each
  // accumulated gradient into its bucket and issue the bucket's collective when the bucket is
  // full. false (earlier micro batches): gradients just accumulate in .grad, no communication.
  void set_gradient_sync(bool sync) {
    sync_ = sync;
    if (units_) units_->set_final_micro_batch(sync);
  }
  // After the final backward: issues what backward did not (parameters that got no gradient count
  // as zeros), waits for every collective and leaves the reduced gradients in the buckets.
  void wait_for_gradients();
  // Hands this rank's reduced gradients to optimizer_params() multiplied by inv_scale (16-bit:
  // converted to fp32 in one pass) and returns whether ANY rank saw an inf or NaN (an all-reduce
  // of the flag), so that all ranks skip an fp16 step together.
  bool unscale_gradients(double inv_scale = 1.0);
  // The global L2 norm of the gradients (ZeRO: sqrt of the all-reduced sum of the shards' squares)
  // and, when max_norm > 0, torch's clipping coefficient max_norm / (norm + 1e-6) applied when < 1.
  double clip_grad_norm(double max_norm);
  // After optimizer.step(): writes the stepped shards into the model (16-bit: rounded to nearest
  // even) and all-gathers them (ZeRO-1/2), so every rank holds the whole updated model.
  void update_parameters();
  // After the model's parameters were overwritten (loading a checkpoint): refreshes the masters.
  void reload_masters_from_model();

  // Sum over ranks of a host scalar (token counts, loss sums), through the group.
  double sum_across_ranks(double value) const;
  std::vector<double> sum_across_ranks(std::vector<double> values) const;  // one collective for all

  // Per-rank model-state bytes held now: flat parameter buffers, persistent gradient buffers,
  // fp32 masters plus the optimizer's state tensors.
  ModelStateBytes model_state_bytes(const nn::Optimizer& optimizer) const;
  // The ZeRO paper's figures for this engine's preset, psi, world size and dtypes.
  ModelStateBytes model_state_theory(OptimizerStateKind optimizer) const;

  ProcessGroup& group() const { return group_; }
  const DataParallelOptions& options() const { return options_; }
  Preset preset() const { return options_.preset; }
  int64_t trained_numel() const { return trained_numel_; }  // psi
  DType param_dtype() const { return param_dtype_; }
  DType reduce_dtype() const { return reduce_dtype_; }
  bool has_master_weights() const { return !masters().empty(); }
  // The flat buffers and their shards: gradient buckets, or (zero3, hybrid_shard) the sharded units.
  const std::vector<BucketLayout>& buckets() const { return units_ ? units_->layouts() : layout_; }
  // For every trained parameter: global shape and the ranges of it this rank owns.
  std::vector<ParameterShard> parameter_shards() const;
  // The group the parameters and optimizer state are sharded over (hybrid: this rank's shard
  // group; DDP: the world, though nothing is sharded) and this rank's shard index in it.
  ProcessGroup& shard_group() const { return units_ ? units_->shard_group() : group_; }

  // zero3 / hybrid_shard (collective): every unit gathered, so that the model's parameters can be
  // read or written (checkpoints, comparisons); free_full_parameters() releases them again.
  // No-ops for the other presets, whose parameters are always whole.
  void gather_full_parameters();
  void free_full_parameters();
  // The sharded units, or null for ddp / zero1 / zero2.
  const ShardedUnits* sharded_units() const { return units_.get(); }
  const std::vector<EngineEvent>& events() const { return events_; }
  // Named per-rank state for checkpoints: "master.<bucket>" (16-bit runs).
  nn::NamedTensors master_state() const;
  void load_master_state(const nn::NamedTensors& state);

 private:
  struct BucketState {
    Tensor params;      // (padded_numel,) flat parameters, MemTag::parameter; the model's params view it
    Tensor grads;       // (padded_numel,) reduce dtype; ddp/zero1: persistent gradient, zero2: transient
    Tensor grad_shard;  // (shard_numel,) reduce-scatter output; zero2: persistent gradient, zero1: transient
    WorkHandle work;
    // offload_optimizer: the reduced shard on its way to the host (started as soon as the bucket's
    // collective is done, while backward goes on), picked up by unscale_gradients().
    Tensor grad_host;
    PendingCopyHandle grad_down;
    std::vector<bool> arrived;  // per slot: gradient copied in during this step's sync backward
    int pending = 0;
    bool ready = false;
  };
  void on_grad_ready(int param_index);
  void copy_grad_into_bucket(int bucket, const BucketSlot& slot, const Tensor& grad);
  void mark_ready(int bucket);
  void issue_ready_buckets();
  void issue(int bucket);
  // Finishes, in bucket order, the issued collectives that already completed (without blocking),
  // so ZeRO-2's full-size bucket buffers are freed while backward still runs.
  void finish_completed_buckets();
  void finish_bucket(int bucket);  // waits, keeps this rank's reduced shard, frees what is transient
  void reset_buckets();            // ready for the next step's synchronising backward
  Tensor shard_grad(int bucket) const;
  // offload_optimizer: bucket `bucket`'s reduced shard on the host (waiting for its copy), or the
  // shard copied now when no copy was started.
  Tensor host_grad(int bucket);
  void record(EngineEvent::Kind kind, int index);
  void build_buckets(const std::vector<Tensor>& params);
  const std::vector<Tensor>& masters() const { return units_ ? units_->masters() : masters_; }

  ProcessGroup& group_;
  DataParallelOptions options_;
  ShardingPlan plan_;
  std::unique_ptr<ShardedUnits> units_;  // zero3 / hybrid_shard
  std::vector<Tensor> params_;  // trained parameters, registration order
  std::vector<std::string> names_;  // their names (Module constructor)
  std::vector<BucketLayout> layout_;
  std::vector<std::unique_ptr<BucketState>> state_;
  std::vector<std::pair<int, int>> where_;  // param index -> (bucket, slot index)
  std::vector<Tensor> masters_;             // per bucket (16-bit params only)
  std::vector<Tensor> stepped_;             // per bucket: what the optimizer steps
  std::shared_ptr<DataParallelEngine*> alive_;  // the hooks hold a weak copy; null once destroyed
  DType param_dtype_ = DType::f32;
  DType reduce_dtype_ = DType::f32;
  int64_t trained_numel_ = 0;
  bool sync_ = true;
  int next_to_issue_ = 0;
  int next_to_finish_ = 0;
  std::vector<EngineEvent> events_;
};

}  // namespace shardlab::dist
