// The data-parallel engine's set-up (flat buffers, rebinding, initial broadcast, hooks) and its
// gradient path: hook -> bucket -> collective issued in bucket order -> wait (see data_parallel.h).
#include "distributed/data_parallel.h"

#include <unordered_set>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/memory_ledger.h"
#include "core/ops.h"

namespace shardlab::dist {

namespace {
bool is_16bit(DType t) { return t == DType::bf16 || t == DType::f16; }
}  // namespace

DataParallelEngine::DataParallelEngine(const std::vector<Tensor>& params, ProcessGroup& group,
                                       DataParallelOptions options)
    : group_(group), options_(std::move(options)), plan_(ShardingPlan::of(options_.preset)) {
  validate(options_);
  SL_CHECK(!plan_.shard_parameters, "data parallel: preset ", preset_name(options_.preset),
           " shards parameters: build the engine from the model (DataParallelEngine(model, group, options))");
  build_buckets(params);
}

DataParallelEngine::DataParallelEngine(nn::Module& model, ProcessGroup& group, DataParallelOptions options)
    : group_(group), options_(std::move(options)), plan_(ShardingPlan::of(options_.preset)) {
  validate(options_);
  if (!plan_.shard_parameters) {
    build_buckets(model.parameters());
    for (const Tensor& p : params_)
      for (const auto& [name, t] : model.named_parameters())
        if (t.impl() == p.impl()) {
          names_.push_back(name);
          break;
        }
    return;
  }
  units_ = std::make_unique<ShardedUnits>(model, group_, options_, options_.record_events ? &events_ : nullptr);
  params_ = units_->params();
  names_ = units_->param_names();
  param_dtype_ = units_->param_dtype();
  reduce_dtype_ = units_->reduce_dtype();
  trained_numel_ = units_->trained_numel();
}

void DataParallelEngine::build_buckets(const std::vector<Tensor>& params) {
  NoGradGuard no_grad;
  std::unordered_set<const TensorImpl*> seen;  // tied weights appear once
  for (const Tensor& p : params)
    if (p.requires_grad() && seen.insert(p.impl()).second) params_.push_back(p);
  SL_CHECK(!params_.empty(), "data parallel: the model has no trainable parameters");
  SL_CHECK(!options_.offload_optimizer || !params_[0].device().is_cpu(),
           "data parallel: offload_optimizer moves the optimizer off the GPU, but the parameters are on the CPU "
           "already (train with device: cuda, or drop offload_optimizer)");
  param_dtype_ = params_[0].dtype();
  SL_CHECK(param_dtype_ == DType::f32 || is_16bit(param_dtype_), "data parallel: parameters of dtype ",
           dtype_name(param_dtype_), " are not supported (f32, bf16 or f16)");
  reduce_dtype_ = options_.reduce_dtype.value_or(param_dtype_);
  SL_CHECK(reduce_dtype_ == param_dtype_ || (is_16bit(param_dtype_) && reduce_dtype_ == DType::f32),
           "data parallel: reduce dtype ", dtype_name(reduce_dtype_), " with ", dtype_name(param_dtype_),
           " parameters is not supported (the parameters' dtype, or f32 for 16-bit parameters)");
  std::vector<int64_t> numels;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    SL_CHECK(p.dtype() == param_dtype_, "data parallel: parameter ", i, " (shape ", shape_str(p.shape()), ") is ",
             dtype_name(p.dtype()), " but parameter 0 is ", dtype_name(param_dtype_), "; one dtype is required");
    SL_CHECK(p.is_contiguous() && p.device() == params_[0].device(), "data parallel: parameter ", i, " (shape ",
             shape_str(p.shape()), ") must be contiguous and on the same device as the others");
    numels.push_back(p.numel());
    trained_numel_ += p.numel();
  }
  const int world = group_.size(), rank = group_.rank();
  layout_ = plan_buckets(numels, options_.reduce_bucket_size, world);
  where_.resize(params_.size());
  const Device device = params_[0].device();
  for (size_t b = 0; b < layout_.size(); ++b) {
    const BucketLayout& L = layout_[b];
    auto st = std::make_unique<BucketState>();
    {
      MemTagScope tag(MemTag::parameter);
      st->params = Tensor::zeros({L.padded_numel}, param_dtype_, device);
    }
    for (size_t s = 0; s < L.slots.size(); ++s) {
      const BucketSlot& slot = L.slots[s];
      where_[slot.param] = {static_cast<int>(b), static_cast<int>(s)};
      Tensor& p = params_[slot.param];
      ops::copy_(ops::narrow(st->params, 0, slot.offset, slot.numel), ops::reshape(p, {slot.numel}));
      // Rebind the parameter to its place in the flat buffer (its old storage is released), so an
      // all-gather into the flat buffer updates the model with no copy.
      TensorImpl* impl = p.impl();
      impl->storage = st->params.storage();
      impl->offset = st->params.offset() + slot.offset;
      impl->strides = contiguous_strides(impl->shape);
    }
    if (options_.broadcast_initial_parameters) group_.broadcast(st->params, 0)->wait();
    {
      // The persistent gradient: the whole bucket (ddp, zero1) or this rank's shard of it (zero2).
      MemTagScope tag(MemTag::gradient);
      (plan_.shard_gradients ? st->grad_shard : st->grads) =
          Tensor::zeros({plan_.shard_gradients ? L.shard_numel : L.padded_numel}, reduce_dtype_, device);
    }
    // What this rank's optimizer steps: its shard (DDP: the whole bucket).
    const int64_t own_offset = plan_.shard_optimizer_state ? L.shard_offset(rank) : 0;
    const int64_t own_numel = plan_.shard_optimizer_state ? L.shard_numel : L.padded_numel;
    Tensor own = ops::narrow(st->params, 0, own_offset, own_numel);
    if (is_16bit(param_dtype_) || options_.offload_optimizer) {
      MemTagScope tag(MemTag::optimizer_state);  // ZeRO counts fp32 masters with the optimizer
      // Offloaded: the master shard (and so the optimizer's state, made beside it) is on the host.
      Tensor master = options_.offload_optimizer ? Tensor::empty_pinned({own_numel}, DType::f32)
                                                 : Tensor::empty({own_numel}, DType::f32, device);
      ops::copy_(master, own);
      masters_.push_back(master);
      own = master;
    } else {
      own = ops::alias(own);  // its own autograd state: a leaf the optimizer steps in place
    }
    own.set_requires_grad(true);
    stepped_.push_back(own);
    st->arrived.assign(L.slots.size(), false);
    st->pending = static_cast<int>(L.slots.size());
    state_.push_back(std::move(st));
  }
  alive_ = std::make_shared<DataParallelEngine*>(this);
  std::weak_ptr<DataParallelEngine*> weak = alive_;
  for (size_t i = 0; i < params_.size(); ++i)
    register_grad_ready_hook(params_[i], [weak, i](const Tensor&) {
      if (std::shared_ptr<DataParallelEngine*> engine = weak.lock()) (*engine)->on_grad_ready(static_cast<int>(i));
    });
}

DataParallelEngine::~DataParallelEngine() {
  alive_.reset();
  // Never free a buffer a collective still writes. A collective that failed has already reported
  // (or will, through the group's timeout); a destructor must not throw.
  for (auto& st : state_)
    if (st->work) try {
        st->work->wait();
      } catch (const Error&) {
      }
}

void DataParallelEngine::record(EngineEvent::Kind kind, int index) {
  if (options_.record_events) events_.push_back({kind, index});
}

void DataParallelEngine::zero_grad() {
  if (units_) return units_->zero_grad();
  SL_CHECK(next_to_finish_ == next_to_issue_, "data parallel: zero_grad with ", next_to_issue_ - next_to_finish_,
           " bucket collective(s) in flight; call wait_for_gradients() after the final backward first");
  for (const Tensor& p : params_) p.set_grad(Tensor());
  for (const Tensor& s : stepped_) s.set_grad(Tensor());
  for (auto& st : state_) {  // offload: no copy may still read the buffers about to be reused
    if (st->grad_down) st->grad_down->wait();
    st->grad_down.reset();
    st->grad_host = Tensor();
  }
  reset_buckets();  // a step abandoned half-way (an error between micro batches) leaves no trace
}

void DataParallelEngine::reset_buckets() {
  for (size_t b = 0; b < state_.size(); ++b) {
    BucketState& st = *state_[b];
    st.arrived.assign(st.arrived.size(), false);
    st.pending = static_cast<int>(st.arrived.size());
    st.ready = false;
    if (plan_.shard_gradients) st.grads = Tensor();  // zero2: the full-size buffer is transient
  }
  next_to_issue_ = 0;
  next_to_finish_ = 0;
  sync_ = true;
}

void DataParallelEngine::on_grad_ready(int param_index) {
  record(EngineEvent::grad_ready, param_index);
  if (!sync_) return;  // a non-final micro batch: the gradient keeps accumulating in .grad
  const auto [b, s] = where_[param_index];
  BucketState& st = *state_[b];
  SL_CHECK(!st.arrived[s], "data parallel: parameter ", param_index, " got a second gradient in the same "
           "synchronising backward; call set_gradient_sync(true) only for a step's final micro batch");
  copy_grad_into_bucket(b, layout_[b].slots[s], params_[param_index].grad());
  st.arrived[s] = true;
  if (--st.pending == 0) mark_ready(b);
}

void DataParallelEngine::copy_grad_into_bucket(int bucket, const BucketSlot& slot, const Tensor& grad) {
  NoGradGuard no_grad;
  BucketState& st = *state_[bucket];
  if (!st.grads.defined()) {  // zero2: the full-size buffer lives only until its reduce-scatter is done
    MemTagScope tag(MemTag::communication);
    st.grads = Tensor::zeros({layout_[bucket].padded_numel}, reduce_dtype_, params_[0].device());
  }
  Tensor dst = ops::narrow(st.grads, 0, slot.offset, slot.numel);
  if (grad.defined()) ops::copy_(dst, ops::reshape(grad, {slot.numel}));
  else ops::fill_(dst, 0.0);
  // The gradient now lives in the bucket: release the full-size .grad at once.
  params_[slot.param].set_grad(Tensor());
}

void DataParallelEngine::mark_ready(int bucket) {
  state_[bucket]->ready = true;
  if (options_.overlap_comm) issue_ready_buckets();
}

// Collectives must be issued in the same order on every rank, so buckets go strictly in index order
// even when a later one happens to fill first.
void DataParallelEngine::issue_ready_buckets() {
  while (next_to_issue_ < static_cast<int>(layout_.size()) && state_[next_to_issue_]->ready) issue(next_to_issue_++);
}

void DataParallelEngine::issue(int bucket) {
  BucketState& st = *state_[bucket];
  switch (options_.preset) {
    case Preset::ddp:
      st.work = group_.all_reduce(st.grads, ReduceOp::sum);
      break;
    case Preset::zero1: {
      MemTagScope tag(MemTag::communication);
      st.grad_shard = Tensor::empty({layout_[bucket].shard_numel}, reduce_dtype_, st.grads.device());
      st.work = group_.reduce_scatter(st.grad_shard, st.grads, ReduceOp::sum);
      break;
    }
    case Preset::zero2:
    case Preset::zero3:
    case Preset::hybrid_shard:
      st.work = group_.reduce_scatter(st.grad_shard, st.grads, ReduceOp::sum);
      break;
  }
  record(EngineEvent::bucket_issued, bucket);
  finish_completed_buckets();
}

void DataParallelEngine::finish_completed_buckets() {
  while (next_to_finish_ < next_to_issue_ && state_[next_to_finish_]->work->is_completed())
    finish_bucket(next_to_finish_++);
}

void DataParallelEngine::finish_bucket(int bucket) {
  NoGradGuard no_grad;
  BucketState& st = *state_[bucket];
  st.work->wait();
  st.work.reset();
  record(EngineEvent::bucket_reduced, bucket);
  if (options_.preset == Preset::zero1) {
    // Keep the reduced shard in this rank's part of the (replicated-size) gradient buffer.
    const BucketLayout& L = layout_[bucket];
    ops::copy_(ops::narrow(st.grads, 0, L.shard_offset(group_.rank()), L.shard_numel), st.grad_shard);
    st.grad_shard = Tensor();
  } else if (plan_.shard_gradients) {
    st.grads = Tensor();
  }
  if (options_.offload_optimizer) {  // the final reduced shard: start it down while backward goes on
    const Tensor reduced = shard_grad(bucket);
    {
      MemTagScope tag(MemTag::gradient);
      st.grad_host = Tensor::empty_pinned(reduced.shape(), reduced.dtype());
    }
    st.grad_down = copy_async(st.grad_host, reduced);
  }
}

void DataParallelEngine::wait_for_gradients() {
  if (units_) return units_->wait_for_gradients();
  NoGradGuard no_grad;
  // Buckets backward did not complete: parameters that got no gradient in the final backward (unused
  // in it) contribute what they accumulated earlier, or zeros.
  for (size_t b = 0; b < layout_.size(); ++b) {
    BucketState& st = *state_[b];
    if (st.ready) continue;
    for (size_t s = 0; s < layout_[b].slots.size(); ++s)
      if (!st.arrived[s]) copy_grad_into_bucket(static_cast<int>(b), layout_[b].slots[s],
                                                params_[layout_[b].slots[s].param].grad());
    st.ready = true;
  }
  issue_ready_buckets();
  while (next_to_finish_ < static_cast<int>(layout_.size())) finish_bucket(next_to_finish_++);
  reset_buckets();
}

Tensor DataParallelEngine::shard_grad(int bucket) const {
  if (units_) return units_->grad_shard(bucket);
  const BucketState& st = *state_[bucket];
  switch (options_.preset) {
    case Preset::ddp: return st.grads;
    case Preset::zero1:
      return ops::narrow(st.grads, 0, layout_[bucket].shard_offset(group_.rank()), layout_[bucket].shard_numel);
    case Preset::zero2:
    case Preset::zero3:
    case Preset::hybrid_shard: return st.grad_shard;
  }
  return Tensor();
}

}  // namespace shardlab::dist
