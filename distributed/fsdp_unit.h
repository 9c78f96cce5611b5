// ZeRO-3 / FSDP full and hybrid sharding: the trained parameters cut into units (decoder layers
// plus a root unit, or one unit per parameter), each held as a 1/N flat shard, gathered for its
// forward and backward, freed after use, with its gradients reduce-scattered into a 1/N shard.
// DataParallelEngine owns one of these for the zero3 and hybrid_shard presets (data_parallel.h).
//
// NOTE [sharded units]:
//  - Units: with WrapPolicy::decoder_layer every module whose type name is in
//    transformer_layer_cls_to_wrap is a unit (outermost match), the model passed in is the root
//    unit with every other trained parameter (embeddings, final norm, lm_head). Their forward must
//    run the module's forward pre/post hooks (nn/module.h): LlamaDecoderLayer::forward and
//    LlamaForCausalLM::logits do. Forward order is assumed to be registration order (prefetch).
//    WrapPolicy::per_parameter: every parameter is a unit of its own (own flat shard, own
//    collectives), fetched at its enclosing decoder layer's (or the root's) hooks.
//  - Only trained parameters are sharded; frozen ones (LoRA base weights, NF4 bases) stay
//    replicated and untouched. Parameters smaller than param_persistence_threshold form one
//    persistent unit: always gathered, re-gathered after each step.
//  - Flat shards are padded to a multiple of the shard-group size. The gathered buffer is
//    committed for use and released in place (param_shard.h), under MemTag::communication.
//  - Forward: a unit's pre-hook waits for (or issues) its all-gather, then issues the next units'
//    gathers up to prefetch_bucket_size elements (forward_prefetch); its post-hook frees it
//    (reshard after forward) except the root, which stays gathered for backward (FSDP's root
//    rule), and attaches an identity whose backward is the unit's pre-backward: gather it again
//    and prefetch the previous unit (backward_pre). When every trained parameter of a unit has its
//    gradient for this backward, the unit's gradients are reduce-scattered (every micro batch, as
//    DeepSpeed stage 3: full-size gradients exist only inside a unit's backward), added into the
//    persistent gradient shard, and the gathered buffer is freed (backward_post prefetches here).
//  - A checkpointed layer's forward runs without grad (freed at once) and its recompute in
//    backward runs the same hooks: the pre-hook gathers, the post-hook keeps it for the backward.
//  - On a device the gathered buffers are device storage released in place (param_shard.h).
//    offload_optimizer puts the fp32 masters (also of f32 parameters) and so the optimizer state
//    in pinned host memory; offload_param puts each unit's parameter and gradient shards there too.
//    The copies are asynchronous (core/async_copy.h) and overlap with compute:
//      upload (offload_param): a unit's shard goes up (a transient device copy, MemTag::communication)
//        one hook point ahead of its all-gather, so it rides the prefetch: upload(h+2) and
//        gather(h+1) run while h computes;
//      gradients down: a reduced shard goes down as soon as its reduce-scatter is done, while
//        backward goes on (offload_param: every micro batch, added in on the host when it has
//        arrived; offload_optimizer: the final micro batch's gradient shard, for the optimizer);
//      parameters up (offload_optimizer): after the host step each updated master (rounded to the
//        parameter dtype on the host) goes up while the next units are rounded, and a unit's
//        gather waits only for its own upload, so uploads overlap the next forward.
//  - Hybrid: gathers and reduce-scatters in the shard group (consecutive hybrid_shard_group_size
//    ranks); wait_for_gradients all-reduces the gradient shards across the replicate group.
//  - Every collective is issued from the compute thread in program order, identical on all ranks;
//    only waiting depends on completion. Callers must keep it so: gather_all() is collective.
//  - The model outlives the engine only as shards: once the engine is gone its trained parameters
//    keep pointing at released unit buffers (gather_all() first to keep a whole model).
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "core/async_copy.h"
#include "core/tensor.h"
#include "distributed/device_mesh.h"
#include "distributed/grad_bucket.h"
#include "distributed/param_shard.h"
#include "distributed/process_group.h"
#include "distributed/sharding_plan.h"
#include "distributed/zero_theory.h"
#include "nn/module.h"

namespace shardlab::dist {

struct EngineEvent;

class ShardedUnits {
 public:
  // Collective over `world`. events: where to record (null: not recorded).
  ShardedUnits(nn::Module& model, ProcessGroup& world, const DataParallelOptions& options,
               std::vector<EngineEvent>* events);
  ~ShardedUnits();
  ShardedUnits(const ShardedUnits&) = delete;
  ShardedUnits& operator=(const ShardedUnits&) = delete;

  const std::vector<Tensor>& optimizer_params() const { return stepped_; }
  const std::vector<BucketLayout>& layouts() const { return layouts_; }
  const std::vector<Tensor>& params() const { return params_; }
  const std::vector<std::string>& param_names() const { return names_; }
  const std::vector<std::string>& unit_names() const { return unit_names_; }
  ProcessGroup& shard_group() const { return *shard_group_; }
  ProcessGroup* replicate_group() const { return replicate_group_.get(); }
  DType param_dtype() const { return param_dtype_; }
  DType reduce_dtype() const { return reduce_dtype_; }
  int64_t trained_numel() const { return trained_numel_; }
  bool has_master_weights() const { return !masters_.empty(); }

  void zero_grad();
  // The trainer's set_gradient_sync: whether this backward is the step's last micro batch (its
  // reduced gradients are final, so offload_optimizer can start copying them down).
  void set_final_micro_batch(bool final) { final_micro_batch_ = final; }
  void wait_for_gradients();
  // offload_optimizer: unit `unit`'s final gradient shard on the host once its copy has arrived,
  // or undefined when no copy was started (the caller copies it then).
  Tensor downloaded_gradient(int unit);
  Tensor grad_shard(int unit) const { return units_[unit]->grad_shard; }
  Tensor parameter_shard(int unit) const { return units_[unit]->shard; }
  // Sum over the shard group of this rank's gradient shards' squares (the global norm squared).
  double grad_squares() const;
  void update_parameters();
  void reload_masters_from_model();  // inside gather_all() / free_all(): shards from the gathered model
  const std::vector<Tensor>& masters() const { return masters_; }

  // Every unit gathered (collective), e.g. to read or write the whole model; free_all() releases them.
  void gather_all();
  void free_all();

  ModelStateBytes model_state_bytes() const;  // optimizer's own state not included
  int64_t gathered_bytes() const { return gathered_bytes_; }
  int64_t gathered_peak_bytes() const { return gathered_peak_; }
  void reset_gathered_peak() { gathered_peak_ = gathered_bytes_; }

 private:
  enum class Gather { freed, in_flight, gathered };
  struct Unit {
    int hook = -1;  // -1: the persistent unit
    std::unique_ptr<GatherableBuffer> buffer;  // null for the persistent unit
    Tensor full;        // (padded_numel,) the parameters view it
    Tensor shard;       // (shard_numel,) MemTag::parameter: this rank's part (CPU with offload_param)
    Tensor shard_up;    // offload_param: the shard's device copy while its upload and all-gather run
    PendingCopyHandle upload;     // offload_param: shard -> shard_up in flight
    Tensor grad_host;             // a reduced gradient shard on its way down (pinned host)
    PendingCopyHandle grad_down;  // -> grad_host in flight
    PendingCopyHandle param_up;   // offload_optimizer: the updated master -> shard in flight
    Tensor grad_shard;  // (shard_numel,) MemTag::gradient, reduce dtype, summed over micro batches
    Gather state = Gather::freed;
    WorkHandle gather_work;
    Tensor grad_full, grad_out;  // transient reduce-scatter buffers
    WorkHandle reduce_work;
    std::vector<bool> arrived;
    int pending = 0;
  };
  struct HookPoint {
    std::string name;
    nn::Module* module = nullptr;
    std::vector<int> units;
    int64_t numel = 0;  // gathered elements (padded)
    int pre_handle = -1, post_handle = -1;
  };
  void build_units(nn::Module& model, const DataParallelOptions& options);
  void add_unit(int hook, const std::vector<int>& params, const std::string& name);
  void install_hooks();
  void record(int kind, int index);

  // Hook bodies (fsdp_unit_hooks.cc).
  void pre_forward(int hook);
  Tensor post_forward(int hook, const Tensor& output);
  void pre_backward(int hook);
  void on_grad_ready(int param);
  void unit_backward_done(int unit);
  void issue_gather(int unit);
  void start_upload(int unit);       // offload_param: the shard's copy to the device, if not begun
  void start_grad_down(int unit, const Tensor& reduced);
  void settle_grad_down(int unit);   // waits; offload_param: adds the arrived gradient into the shard
  void settle_param_up(int unit);
  void drop_uploads();
  // The all-gather of `unit`'s shard into `target` (the shard copied to the device first when offloaded).
  WorkHandle gather_shard_into(int unit, const Tensor& target);
  void wait_gathered(int unit);
  void ensure_hook_gathered(int hook);
  void free_unit(int unit);
  void prefetch(int from_hook, int direction);
  void issue_reduce_scatter(int unit);
  void finish_reduce_scatter(int unit);
  void finish_completed_reduces();

  ProcessGroup& world_;
  DataParallelOptions options_;
  std::unique_ptr<DeviceMesh> mesh_;  // hybrid only
  std::shared_ptr<ProcessGroup> shard_group_, replicate_group_;
  std::vector<Tensor> params_;
  std::vector<std::string> names_;
  std::vector<std::pair<int, int>> where_;  // param -> (unit, slot)
  std::vector<std::unique_ptr<Unit>> units_;
  std::vector<BucketLayout> layouts_;
  std::vector<std::string> unit_names_;
  std::vector<HookPoint> hooks_;  // 0: the root
  std::vector<Tensor> masters_, stepped_;
  std::deque<int> reducing_;  // units whose reduce-scatter is in flight, in issue order
  DType param_dtype_ = DType::f32, reduce_dtype_ = DType::f32;
  int64_t trained_numel_ = 0;
  bool in_backward_ = false;  // set by the root's pre-backward, cleared by the root's next forward
  bool final_micro_batch_ = true;
  int64_t gathered_bytes_ = 0, gathered_peak_ = 0;
  std::vector<EngineEvent>* events_;
  std::shared_ptr<ShardedUnits*> alive_;
};

}  // namespace shardlab::dist
