// Gathering the trained parameters onto rank 0 bucket by bucket (see checkpoint_export.h).
#include "distributed/checkpoint_export.h"

#include <unordered_set>

#include "autograd/grad_mode.h"
#include "core/memory_ledger.h"
#include "core/ops.h"

namespace shardlab::dist {

nn::NamedTensors gather_full_parameters(const DataParallelEngine& engine, const nn::NamedTensors& named, DType dtype) {
  NoGradGuard no_grad;
  nn::NamedTensors trained;  // the engine's parameter order: trained, each tensor once
  std::unordered_set<const TensorImpl*> seen;
  for (const auto& [name, t] : named)
    if (t.requires_grad() && seen.insert(t.impl()).second) trained.emplace_back(name, t);
  // The shards of a bucket are spread over the shard group (hybrid: within each group of replicas).
  ProcessGroup& group = engine.shard_group();
  const bool rank0 = engine.group().rank() == 0;
  const bool sharded = ShardingPlan::of(engine.preset()).shard_optimizer_state;
  std::vector<Tensor> out(trained.size());
  const std::vector<BucketLayout>& buckets = engine.buckets();
  for (size_t b = 0; b < buckets.size(); ++b) {
    const BucketLayout& L = buckets[b];
    // The stepped values are the real ones (fp32 masters of 16-bit runs, else the parameters).
    const Tensor& shard = engine.optimizer_params()[b];
    Tensor full = shard;  // DDP: every rank steps the whole bucket
    if (sharded) {
      MemTagScope tag(MemTag::communication);
      full = Tensor::empty({L.padded_numel}, shard.dtype(), shard.device());
      group.all_gather(full, shard)->wait();
    }
    if (!rank0) continue;
    for (const BucketSlot& slot : L.slots) {
      SL_CHECK(slot.param < static_cast<int>(trained.size()) && trained[slot.param].second.numel() == slot.numel,
               "full state dict: the engine's parameter ", slot.param, " does not match the model's trained "
               "parameters; build the engine on model.parameters()");
      MemTagScope tag(MemTag::other);
      Tensor t = Tensor::empty(trained[slot.param].second.shape(), dtype);
      ops::copy_(t, ops::reshape(ops::narrow(full, 0, slot.offset, slot.numel), t.shape()));
      out[slot.param] = t;
    }
  }
  nn::NamedTensors result;
  if (rank0)
    for (size_t i = 0; i < trained.size(); ++i) result.emplace_back(trained[i].first, out[i]);
  return result;
}

}  // namespace shardlab::dist
