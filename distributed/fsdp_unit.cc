// ShardedUnits set-up (units, shards, masters, hooks) and the step-level operations: gradient
// hand-over at the end of backward, norm, the post-step write-back, gather_all/free_all, figures.
#include "distributed/fsdp_unit.h"

#include <algorithm>
#include <unordered_map>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/memory_ledger.h"
#include "core/ops.h"
#include "distributed/data_parallel.h"

namespace shardlab::dist {

namespace {
bool is_16bit(DType t) { return t == DType::bf16 || t == DType::f16; }
// Offloaded state crosses to the device every step: pinned host memory when the backend has it.
Tensor empty_state(int64_t numel, DType dtype, Device device, bool offloaded) {
  return offloaded && device.is_cpu() ? Tensor::empty_pinned({numel}, dtype) : Tensor::empty({numel}, dtype, device);
}
}  // namespace

ShardedUnits::ShardedUnits(nn::Module& model, ProcessGroup& world, const DataParallelOptions& options,
                           std::vector<EngineEvent>* events)
    : world_(world), options_(options), events_(events) {
  NoGradGuard no_grad;
  const int group_size = options_.preset == Preset::hybrid_shard && options_.hybrid_shard_group_size > 0
                             ? options_.hybrid_shard_group_size
                             : world_.size();
  SL_CHECK(world_.size() % group_size == 0, "data parallel: hybrid_shard_group_size ", group_size,
           " does not divide the world size ", world_.size());
  // A non-owning handle: the caller keeps the world group alive for the engine's lifetime.
  std::shared_ptr<ProcessGroup> world_handle(&world_, [](ProcessGroup*) {});
  if (options_.preset == Preset::hybrid_shard) {
    mesh_ = std::make_unique<DeviceMesh>(world_handle, std::vector<std::string>{"replicate", "shard"},
                                         std::vector<int>{world_.size() / group_size, group_size});
    shard_group_ = mesh_->group("shard");
    replicate_group_ = mesh_->group("replicate");
  } else {
    shard_group_ = world_handle;
  }
  build_units(model, options_);
  install_hooks();
}

ShardedUnits::~ShardedUnits() {
  alive_.reset();
  for (HookPoint& h : hooks_) {
    h.module->remove_forward_pre_post_hook(h.pre_handle);
    h.module->remove_forward_pre_post_hook(h.post_handle);
  }
  // Never free a buffer a collective still writes; a destructor must not throw.
  for (auto& u : units_)
    for (WorkHandle* w : {&u->gather_work, &u->reduce_work})
      if (*w) try {
          (*w)->wait();
        } catch (const Error&) {
        }
}

void ShardedUnits::record(int kind, int index) {
  if (events_ != nullptr) events_->push_back({static_cast<EngineEvent::Kind>(kind), index});
}

void ShardedUnits::build_units(nn::Module& model, const DataParallelOptions& options) {
  std::unordered_map<const TensorImpl*, int> index;  // tied weights appear once
  for (const auto& [name, p] : model.named_parameters())
    if (p.requires_grad() && index.emplace(p.impl(), static_cast<int>(params_.size())).second) {
      params_.push_back(p);
      names_.push_back(name);
    }
  SL_CHECK(!params_.empty(), "data parallel: the model has no trainable parameters");
  param_dtype_ = params_[0].dtype();
  SL_CHECK(!(options.offload_optimizer || options.offload_param) || !params_[0].device().is_cpu(),
           "data parallel: ", options.offload_param ? "offload_param" : "offload_optimizer",
           " moves model state off the GPU, but the parameters are on the CPU already (train with device: cuda, "
           "or drop the offload)");
  SL_CHECK(param_dtype_ == DType::f32 || is_16bit(param_dtype_), "data parallel: parameters of dtype ",
           dtype_name(param_dtype_), " are not supported (f32, bf16 or f16)");
  reduce_dtype_ = options.reduce_dtype.value_or(param_dtype_);
  SL_CHECK(reduce_dtype_ == param_dtype_ || (is_16bit(param_dtype_) && reduce_dtype_ == DType::f32),
           "data parallel: reduce dtype ", dtype_name(reduce_dtype_), " with ", dtype_name(param_dtype_),
           " parameters is not supported");
  for (size_t i = 0; i < params_.size(); ++i) {
    SL_CHECK(params_[i].dtype() == param_dtype_, "data parallel: parameter ", names_[i], " is ",
             dtype_name(params_[i].dtype()), " but ", names_[0], " is ", dtype_name(param_dtype_));
    SL_CHECK(params_[i].is_contiguous(), "data parallel: parameter ", names_[i], " is not contiguous");
    SL_CHECK(params_[i].device() == params_[0].device(), "data parallel: parameter ", names_[i], " is on ",
             params_[i].device().str(), " but ", names_[0], " is on ", params_[0].device().str());
    trained_numel_ += params_[i].numel();
  }
  // Hook points: the root, then every wrapped module (outermost match) in registration order.
  std::vector<int> owner(params_.size(), 0);
  hooks_.push_back({"<root>", &model, {}, 0});
  const auto& classes = options.transformer_layer_cls_to_wrap;
  std::vector<std::string> wrapped_prefixes;
  for (auto& [prefix, m] : model.named_modules()) {
    if (m == &model || std::find(classes.begin(), classes.end(), m->type_name()) == classes.end()) continue;
    bool nested = false;
    for (const std::string& w : wrapped_prefixes) nested |= prefix.rfind(w + ".", 0) == 0;
    if (nested) continue;
    wrapped_prefixes.push_back(prefix);
    hooks_.push_back({prefix, m, {}, 0});
    for (const auto& [name, p] : m->named_parameters()) {
      auto it = index.find(p.impl());
      if (it != index.end()) owner[it->second] = static_cast<int>(hooks_.size()) - 1;
    }
  }
  std::vector<std::vector<int>> members(hooks_.size());
  std::vector<int> persistent;
  for (size_t i = 0; i < params_.size(); ++i)
    (params_[i].numel() < options.param_persistence_threshold ? persistent : members[owner[i]])
        .push_back(static_cast<int>(i));
  where_.resize(params_.size());
  for (size_t h = 0; h < hooks_.size(); ++h) {
    if (options.wrap == WrapPolicy::per_parameter)
      for (int p : members[h]) add_unit(static_cast<int>(h), {p}, names_[p]);
    else if (!members[h].empty())
      add_unit(static_cast<int>(h), members[h], hooks_[h].name);
  }
  if (!persistent.empty()) add_unit(-1, persistent, "<persistent>");
  // Hook points with nothing to gather need no hooks.
  std::erase_if(hooks_, [](const HookPoint& h) { return h.units.empty() && h.name != "<root>"; });
  for (size_t h = 0; h < hooks_.size(); ++h)
    for (int u : hooks_[h].units) units_[u]->hook = static_cast<int>(h);
}

void ShardedUnits::add_unit(int hook, const std::vector<int>& members, const std::string& name) {
  const int S = shard_group_->size(), rank = shard_group_->rank();
  const int u = static_cast<int>(units_.size());
  BucketLayout L;
  for (int p : members) {
    L.slots.push_back({p, L.numel, params_[p].numel()});
    where_[p] = {u, static_cast<int>(L.slots.size()) - 1};
    L.numel += params_[p].numel();
  }
  L.padded_numel = (L.numel + S - 1) / S * S;
  L.shard_numel = L.padded_numel / S;
  auto unit = std::make_unique<Unit>();
  unit->hook = hook;
  const Device device = params_[members[0]].device();
  // offload_param: shards and gradient shards on the host; either offload: the optimizer there too.
  const Device shard_device = options_.offload_param ? Device::cpu() : device;
  const bool offload_optimizer = options_.offload_optimizer || options_.offload_param;
  if (hook >= 0) {
    unit->buffer = std::make_unique<GatherableBuffer>(L.padded_numel, param_dtype_, device);
    unit->buffer->commit();
    unit->full = unit->buffer->tensor();
    ops::fill_(unit->full, 0.0);
  } else {
    MemTagScope tag(MemTag::parameter);
    unit->full = Tensor::zeros({L.padded_numel}, param_dtype_, device);
  }
  for (const BucketSlot& slot : L.slots) {
    TensorImpl* impl = params_[slot.param].impl();
    ops::copy_(ops::narrow(unit->full, 0, slot.offset, slot.numel), ops::reshape(params_[slot.param], {slot.numel}));
    impl->storage = unit->full.storage();  // rebound: the old storage is released
    impl->offset = slot.offset;
    impl->strides = contiguous_strides(impl->shape);
  }
  if (options_.broadcast_initial_parameters) world_.broadcast(unit->full, 0)->wait();
  {
    MemTagScope tag(MemTag::parameter);
    unit->shard = empty_state(L.shard_numel, param_dtype_, shard_device, options_.offload_param);
  }
  ops::copy_(unit->shard, ops::narrow(unit->full, 0, L.shard_offset(rank), L.shard_numel));
  {
    MemTagScope tag(MemTag::gradient);
    unit->grad_shard = empty_state(L.shard_numel, reduce_dtype_, shard_device, options_.offload_param);
    ops::fill_(unit->grad_shard, 0.0);
  }
  Tensor own = unit->shard;
  // Masters: fp32 copies of 16-bit shards, and of f32 shards that stay on the device while the
  // optimizer is offloaded (an offloaded f32 shard is stepped in place on the host).
  if (is_16bit(param_dtype_) || (offload_optimizer && !shard_device.is_cpu())) {
    MemTagScope tag(MemTag::optimizer_state);
    Tensor master = empty_state(L.shard_numel, DType::f32, offload_optimizer ? Device::cpu() : device, offload_optimizer);
    ops::copy_(master, own);
    masters_.push_back(master);
    own = master;
  } else {
    own = ops::alias(own);
  }
  own.set_requires_grad(true);
  stepped_.push_back(own);
  unit->arrived.assign(L.slots.size(), false);
  unit->pending = static_cast<int>(L.slots.size());
  if (hook >= 0) {
    unit->buffer->release();
    hooks_[hook].units.push_back(u);
    hooks_[hook].numel += L.padded_numel;
  } else {
    unit->state = Gather::gathered;
  }
  units_.push_back(std::move(unit));
  layouts_.push_back(L);
  unit_names_.push_back(name);
}

void ShardedUnits::install_hooks() {
  alive_ = std::make_shared<ShardedUnits*>(this);
  std::weak_ptr<ShardedUnits*> weak = alive_;
  for (size_t i = 0; i < params_.size(); ++i)
    register_grad_ready_hook(params_[i], [weak, i](const Tensor&) {
      if (auto s = weak.lock()) (*s)->on_grad_ready(static_cast<int>(i));
    });
  for (size_t h = 0; h < hooks_.size(); ++h) {
    const int hook = static_cast<int>(h);
    hooks_[h].pre_handle = hooks_[h].module->register_forward_pre_hook([weak, hook](nn::Module&) {
      if (auto s = weak.lock()) (*s)->pre_forward(hook);
    });
    hooks_[h].post_handle = hooks_[h].module->register_forward_post_hook([weak, hook](nn::Module&, const Tensor& out) {
      if (auto s = weak.lock()) return (*s)->post_forward(hook, out);
      return out;
    });
  }
}

void ShardedUnits::zero_grad() {
  SL_CHECK(reducing_.empty(), "data parallel: zero_grad with ", reducing_.size(),
           " reduce-scatter(s) in flight; call wait_for_gradients() after the final backward first");
  NoGradGuard no_grad;
  for (const Tensor& p : params_) p.set_grad(Tensor());
  for (const Tensor& s : stepped_) s.set_grad(Tensor());
  for (size_t u = 0; u < units_.size(); ++u) {
    Unit& unit = *units_[u];
    settle_grad_down(static_cast<int>(u));  // nothing may still write the shards being zeroed
    unit.grad_host = Tensor();
    ops::fill_(unit.grad_shard, 0.0);
    unit.arrived.assign(unit.arrived.size(), false);
    unit.pending = static_cast<int>(unit.arrived.size());
  }
}

void ShardedUnits::wait_for_gradients() {
  NoGradGuard no_grad;
  // Units whose backward did not complete (a parameter got no gradient in the last backward) are
  // reduced with what their parameters accumulated, or zeros; their gathered buffers are freed.
  for (size_t u = 0; u < units_.size(); ++u) {
    bool unreduced = units_[u]->pending < static_cast<int>(units_[u]->arrived.size());
    for (const BucketSlot& slot : layouts_[u].slots) unreduced |= params_[slot.param].grad().defined();
    if (unreduced) unit_backward_done(static_cast<int>(u));
  }
  while (!reducing_.empty()) {
    finish_reduce_scatter(reducing_.front());
    reducing_.pop_front();
  }
  // offload_param: every gradient that went down is in its host shard.
  if (options_.offload_param)
    for (size_t u = 0; u < units_.size(); ++u) settle_grad_down(static_cast<int>(u));
  if (replicate_group_ && replicate_group_->size() > 1) {
    // The replicas' all-reduce runs on the device (offloaded shards go up and come back down).
    const Device device = units_[0]->full.device();
    std::vector<Tensor> reduced;
    std::vector<WorkHandle> works;
    for (auto& u : units_) {
      reduced.push_back(u->grad_shard.device() == device ? u->grad_shard : u->grad_shard.to(device));
      works.push_back(replicate_group_->all_reduce(reduced.back(), ReduceOp::sum));
    }
    for (size_t u = 0; u < units_.size(); ++u) {
      works[u]->wait();
      if (reduced[u].storage() != units_[u]->grad_shard.storage()) ops::copy_(units_[u]->grad_shard, reduced[u]);
      else if (options_.offload_optimizer) start_grad_down(static_cast<int>(u), units_[u]->grad_shard);
    }
  }
  for (size_t u = 0; u < units_.size(); ++u)
    if (units_[u]->hook >= 0) free_unit(static_cast<int>(u));
  drop_uploads();
  in_backward_ = false;
  final_micro_batch_ = true;
}

Tensor ShardedUnits::downloaded_gradient(int u) {
  settle_grad_down(u);
  return units_[u]->grad_host;
}

void ShardedUnits::drop_uploads() {
  // Shards uploaded ahead for a gather that did not come (the last prefetch of a pass) would be
  // stale after the step: let them land and free them. (A gather resets its unit's upload.)
  for (auto& unit : units_)
    if (unit->upload) {
      unit->upload->wait();
      unit->upload.reset();
      unit->shard_up = Tensor();
    }
}

double ShardedUnits::grad_squares() const {
  double squares = 0.0;
  for (const Tensor& s : stepped_)
    if (s.grad().defined()) squares += ops::sum_of_squares(s.grad());  // padding is zero
  if (shard_group_->size() == 1) return squares;
  Tensor t = Tensor::from_vector({squares}, {1}, DType::f64);
  shard_group_->all_reduce(t, ReduceOp::sum)->wait();
  return t.to_double_vector()[0];
}

void ShardedUnits::update_parameters() {
  NoGradGuard no_grad;
  drop_uploads();
  for (size_t u = 0; u < masters_.size(); ++u) {
    Unit& unit = *units_[u];
    if (unit.shard.device() == masters_[u].device()) {
      ops::copy_(unit.shard, masters_[u]);
      continue;
    }
    // offload_optimizer: round on the host (16-bit) while the previous units travel up; a unit's
    // gather waits for its own upload only (gather_shard_into).
    Tensor source = masters_[u];
    if (unit.shard.dtype() != DType::f32) {
      MemTagScope tag(MemTag::communication);
      source = Tensor::empty_pinned(unit.shard.shape(), unit.shard.dtype());
      ops::copy_(source, masters_[u]);
    }
    unit.param_up = copy_async(unit.shard, source);  // the copy keeps `source` alive
  }
  // Sharded parameters stay sharded until their next use; only the persistent unit is re-gathered.
  for (size_t u = 0; u < units_.size(); ++u)
    if (units_[u]->hook < 0) {
      gather_shard_into(static_cast<int>(u), units_[u]->full)->wait();
      units_[u]->shard_up = Tensor();
      record(EngineEvent::parameters_gathered, static_cast<int>(u));
    }
  for (const Tensor& s : stepped_) s.set_grad(Tensor());
}

void ShardedUnits::gather_all() {
  for (size_t u = 0; u < units_.size(); ++u)
    if (units_[u]->state == Gather::freed) issue_gather(static_cast<int>(u));
  for (size_t u = 0; u < units_.size(); ++u) wait_gathered(static_cast<int>(u));
}

void ShardedUnits::free_all() {
  for (size_t u = 0; u < units_.size(); ++u)
    if (units_[u]->hook >= 0) free_unit(static_cast<int>(u));
}

void ShardedUnits::reload_masters_from_model() {
  NoGradGuard no_grad;
  const int rank = shard_group_->rank();
  for (size_t u = 0; u < units_.size(); ++u) {
    settle_param_up(static_cast<int>(u));
    SL_CHECK(units_[u]->state == Gather::gathered, "data parallel: reload_masters_from_model with unit ",
             unit_names_[u], " not gathered; load the model between gather_all() and free_all()");
    const BucketLayout& L = layouts_[u];
    ops::copy_(units_[u]->shard, ops::narrow(units_[u]->full, 0, L.shard_offset(rank), L.shard_numel));
    if (!masters_.empty()) ops::copy_(masters_[u], units_[u]->shard);
  }
}

ModelStateBytes ShardedUnits::model_state_bytes() const {
  ModelStateBytes m;
  for (const auto& u : units_) {
    m.parameters += static_cast<double>(u->shard.nbytes());
    if (u->hook < 0) m.parameters += static_cast<double>(u->full.nbytes());  // persistent: always whole
    m.gradients += static_cast<double>(u->grad_shard.nbytes());
  }
  for (const Tensor& t : masters_) m.optimizer_state += static_cast<double>(t.nbytes());
  return m;
}

}  // namespace shardlab::dist
