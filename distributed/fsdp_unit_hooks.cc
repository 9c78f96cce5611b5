// ShardedUnits' hooks (see NOTE [sharded units] in fsdp_unit.h): gather before forward with
// prefetch, free after it, gather again from the pre-backward identity, reduce-scatter and free
// once a unit's gradients are all there.
#include <algorithm>
#include <utility>

#include "autograd/grad_mode.h"
#include "autograd/record.h"
#include "core/ops.h"
#include "distributed/data_parallel.h"
#include "distributed/fsdp_unit.h"

namespace shardlab::dist {

void ShardedUnits::issue_gather(int u) {
  Unit& unit = *units_[u];
  if (unit.state != Gather::freed) return;
  unit.buffer->commit();
  gathered_bytes_ += unit.buffer->nbytes();
  gathered_peak_ = std::max(gathered_peak_, gathered_bytes_);
  unit.gather_work = gather_shard_into(u, unit.buffer->gather_target());
  unit.state = Gather::in_flight;
  record(EngineEvent::unit_gather_issued, u);
}

WorkHandle ShardedUnits::gather_shard_into(int u, const Tensor& target) {
  Unit& unit = *units_[u];
  settle_param_up(u);  // offload_optimizer: the step's update of this shard has arrived
  if (unit.shard.device() == target.device()) return shard_group_->all_gather(target, unit.shard);
  // offload_param: the collective runs on the device (NCCL needs both ends there), after the
  // upload (started here unless a prefetch started it one hook point earlier).
  start_upload(u);
  unit.upload->wait();
  unit.upload.reset();
  return shard_group_->all_gather(target, unit.shard_up);
}

void ShardedUnits::start_upload(int u) {
  Unit& unit = *units_[u];
  if (!options_.offload_param || unit.upload || unit.shard_up.defined()) return;
  NoGradGuard no_grad;
  MemTagScope tag(MemTag::communication);
  unit.shard_up = Tensor::empty(unit.shard.shape(), unit.shard.dtype(), unit.full.device());
  unit.upload = copy_async(unit.shard_up, unit.shard);
}

void ShardedUnits::wait_gathered(int u) {
  Unit& unit = *units_[u];
  if (unit.state == Gather::freed) issue_gather(u);
  if (unit.state == Gather::in_flight) {
    unit.gather_work->wait();
    unit.gather_work.reset();
    unit.shard_up = Tensor();
    unit.state = Gather::gathered;
    record(EngineEvent::unit_gathered, u);
  }
}

void ShardedUnits::ensure_hook_gathered(int hook) {
  for (int u : hooks_[hook].units) issue_gather(u);
  for (int u : hooks_[hook].units) wait_gathered(u);
}

void ShardedUnits::free_unit(int u) {
  Unit& unit = *units_[u];
  if (unit.hook < 0 || unit.state == Gather::freed) return;
  if (unit.state == Gather::in_flight) {
    unit.gather_work->wait();
    unit.gather_work.reset();
    unit.shard_up = Tensor();
  }
  unit.buffer->release();
  gathered_bytes_ -= unit.buffer->nbytes();
  unit.state = Gather::freed;
  record(EngineEvent::unit_freed, u);
}

// Issues the gathers of the hook points after (direction +1, forward) or before (-1, backward)
// `from_hook`, at least one, then while the elements in flight or gathered ahead stay within
// prefetch_bucket_size. The root (hook 0) is never a prefetch target: it stays gathered.
void ShardedUnits::prefetch(int from_hook, int direction) {
  int64_t ahead = 0;
  int h = from_hook + direction;
  for (; h > 0 && h < static_cast<int>(hooks_.size()); h += direction) {
    if (ahead > 0 && ahead + hooks_[h].numel > options_.prefetch_bucket_size) break;
    ahead += hooks_[h].numel;
    for (int u : hooks_[h].units) issue_gather(u);
  }
  // offload_param: the next hook point's shards start up now, so that its gather finds them there.
  if (options_.offload_param && h > 0 && h < static_cast<int>(hooks_.size()))
    for (int u : hooks_[h].units)
      if (units_[u]->state == Gather::freed) start_upload(u);
}

void ShardedUnits::pre_forward(int hook) {
  record(EngineEvent::unit_forward_begin, hook);
  if (hook == 0) in_backward_ = false;  // a new forward
  else
    SL_CHECK(hooks_[0].units.empty() || units_[hooks_[0].units[0]]->state != Gather::freed,
             "data parallel: ", hooks_[hook].name, "'s forward ran but the root unit (", hooks_[0].module->type_name(),
             ") is not gathered: the model's forward must run its forward hooks (run_forward_pre_hooks)");
  ensure_hook_gathered(hook);
  if (in_backward_) {  // a checkpointed layer's recompute: this is its pre-backward
    if (options_.backward_prefetch == BackwardPrefetch::backward_pre) prefetch(hook, -1);
  } else if (options_.forward_prefetch) {
    prefetch(hook, +1);
  }
}

Tensor ShardedUnits::post_forward(int hook, const Tensor& output) {
  record(EngineEvent::unit_forward_end, hook);
  const bool training = GradMode::enabled() && output.requires_grad();
  // Reshard after forward, except the root in a training forward (needed first in backward) and a
  // unit recomputed in backward (its backward follows at once).
  if (!in_backward_ && !(hook == 0 && training)) {
    if (hook == 0) free_all();  // an evaluation forward: nothing stays gathered
    else
      for (int u : hooks_[hook].units) free_unit(u);
  }
  if (!training) return output;
  // The identity whose backward runs before this unit's backward: FSDP's pre-backward hook.
  Tensor out = ops::alias(output);
  std::weak_ptr<ShardedUnits*> weak = alive_;
  ::shardlab::record("fsdp_pre_backward", {output}, {out}, [weak, hook](const Grads& g) {
    if (auto s = weak.lock()) (*s)->pre_backward(hook);
    return Grads{g[0]};
  });
  return out;
}

void ShardedUnits::pre_backward(int hook) {
  record(EngineEvent::unit_backward_begin, hook);
  in_backward_ = true;
  ensure_hook_gathered(hook);
  if (hook == 0) {  // backward starts: the last unit is needed first
    if (options_.backward_prefetch != BackwardPrefetch::none) prefetch(static_cast<int>(hooks_.size()), -1);
  } else if (options_.backward_prefetch == BackwardPrefetch::backward_pre) {
    prefetch(hook, -1);
  }
}

void ShardedUnits::on_grad_ready(int param) {
  record(EngineEvent::grad_ready, param);
  const auto [u, s] = where_[param];
  Unit& unit = *units_[u];
  if (unit.arrived[s]) return;  // a second gradient in one backward keeps accumulating in .grad
  unit.arrived[s] = true;
  if (--unit.pending == 0) unit_backward_done(u);
}

void ShardedUnits::unit_backward_done(int u) {
  Unit& unit = *units_[u];
  issue_reduce_scatter(u);
  unit.arrived.assign(unit.arrived.size(), false);
  unit.pending = static_cast<int>(unit.arrived.size());
  if (unit.hook < 0) return;
  free_unit(u);
  HookPoint& h = hooks_[unit.hook];
  if (options_.backward_prefetch == BackwardPrefetch::backward_post && unit.hook > 0 && u == h.units.back())
    prefetch(unit.hook, -1);
}

void ShardedUnits::issue_reduce_scatter(int u) {
  NoGradGuard no_grad;
  Unit& unit = *units_[u];
  const BucketLayout& L = layouts_[u];
  // The previous micro batch's reduce-scatter of this unit must be added in before its buffers go.
  while (unit.reduce_work) {
    finish_reduce_scatter(reducing_.front());
    reducing_.pop_front();
  }
  {
    MemTagScope tag(MemTag::communication);
    // On the model's device (where the gradients are and the collective runs), also when the
    // shards are offloaded: the reduced shard goes down afterwards (finish_reduce_scatter).
    const Device device = unit.full.device();
    unit.grad_full = Tensor::zeros({L.padded_numel}, reduce_dtype_, device);
    unit.grad_out = Tensor::empty({L.shard_numel}, reduce_dtype_, device);
  }
  for (const BucketSlot& slot : L.slots) {
    const Tensor& g = params_[slot.param].grad();
    if (g.defined()) ops::copy_(ops::narrow(unit.grad_full, 0, slot.offset, slot.numel), ops::reshape(g, {slot.numel}));
    params_[slot.param].set_grad(Tensor());  // the gradient lives in the flat buffer now
  }
  unit.reduce_work = shard_group_->reduce_scatter(unit.grad_out, unit.grad_full, ReduceOp::sum);
  reducing_.push_back(u);
  record(EngineEvent::bucket_issued, u);
  finish_completed_reduces();
}

void ShardedUnits::finish_completed_reduces() {
  while (!reducing_.empty() && units_[reducing_.front()]->reduce_work->is_completed()) {
    finish_reduce_scatter(reducing_.front());
    reducing_.pop_front();
  }
}

void ShardedUnits::finish_reduce_scatter(int u) {
  NoGradGuard no_grad;
  Unit& unit = *units_[u];
  unit.reduce_work->wait();
  unit.reduce_work.reset();
  settle_grad_down(u);  // this unit's previous copy down (an earlier micro batch) is added in first
  if (unit.grad_shard.device() != unit.grad_out.device()) {
    start_grad_down(u, unit.grad_out);  // offload_param: added into the host shard when it has arrived
  } else {
    unit.grad_host = Tensor();  // an earlier copy of grad_shard is stale from here
    ops::add_(unit.grad_shard, unit.grad_out);  // summed over micro batches
    // offload_optimizer: the final micro batch's sum is the step's gradient; start it down now
    // (hybrid: only after the replicas' all-reduce, in wait_for_gradients).
    const bool replicated = replicate_group_ && replicate_group_->size() > 1;
    if (options_.offload_optimizer && final_micro_batch_ && !replicated) start_grad_down(u, unit.grad_shard);
  }
  unit.grad_full = Tensor();
  unit.grad_out = Tensor();  // a copy in flight keeps its source alive
  record(EngineEvent::bucket_reduced, u);
}

void ShardedUnits::start_grad_down(int u, const Tensor& reduced) {
  Unit& unit = *units_[u];
  {
    MemTagScope tag(MemTag::gradient);
    unit.grad_host = Tensor::empty_pinned(reduced.shape(), reduced.dtype());
  }
  unit.grad_down = copy_async(unit.grad_host, reduced);
}

void ShardedUnits::settle_grad_down(int u) {
  Unit& unit = *units_[u];
  if (!unit.grad_down) return;
  unit.grad_down->wait();
  unit.grad_down.reset();
  if (unit.grad_shard.device().is_cpu()) {  // offload_param: a micro batch's reduced gradient
    NoGradGuard no_grad;
    ops::add_(unit.grad_shard, unit.grad_host);
    unit.grad_host = Tensor();
  }  // offload_optimizer: grad_host is the step's gradient, kept for downloaded_gradient()
}

void ShardedUnits::settle_param_up(int u) {
  Unit& unit = *units_[u];
  if (!unit.param_up) return;
  unit.param_up->wait();
  unit.param_up.reset();
}

}  // namespace shardlab::dist
