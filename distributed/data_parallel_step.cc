// The data-parallel engine around the optimizer step: gradients handed to the shards (unscaled,
// overflow decided across ranks), the global-norm clip, the write-back and all-gather of updated
// parameters, and the model-state figures.
#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "core/memory_ledger.h"
#include "core/ops.h"
#include "distributed/data_parallel.h"
#include "nn/loss_scaler.h"

namespace shardlab::dist {

namespace {
std::string master_key(size_t bucket) {
  std::string key = "master.";
  key += std::to_string(bucket);
  return key;
}
}  // namespace

double DataParallelEngine::sum_across_ranks(double value) const { return sum_across_ranks(std::vector<double>{value})[0]; }

std::vector<double> DataParallelEngine::sum_across_ranks(std::vector<double> values) const {
  if (group_.size() == 1 || values.empty()) return values;
  Tensor t = Tensor::from_vector(values, {static_cast<int64_t>(values.size())}, DType::f64);
  group_.all_reduce(t, ReduceOp::sum)->wait();
  return t.to_double_vector();
}

Tensor DataParallelEngine::host_grad(int bucket) {
  Tensor arrived = units_ ? units_->downloaded_gradient(bucket) : Tensor();
  if (!units_ && state_[bucket]->grad_down) {
    state_[bucket]->grad_down->wait();
    state_[bucket]->grad_down.reset();
    arrived = state_[bucket]->grad_host;
  }
  return arrived.defined() ? arrived : shard_grad(bucket).to(Device::cpu());
}

bool DataParallelEngine::unscale_gradients(double inv_scale) {
  NoGradGuard no_grad;
  bool overflow = false;
  for (size_t b = 0; b < buckets().size(); ++b) {
    Tensor g = shard_grad(static_cast<int>(b));
    if (has_master_weights()) {
      MemTagScope tag(MemTag::gradient);  // transient: dropped by update_parameters()
      const Tensor& master = optimizer_params()[b];
      // Offload: the reduced shard comes down to the host, where its master and the optimizer are
      // (its copy started when its collective finished).
      if (g.device() != master.device()) g = host_grad(static_cast<int>(b));
      Tensor mg = Tensor::empty(g.shape(), DType::f32, master.device());
      overflow |= nn::unscale_into(mg, g, inv_scale);
      optimizer_params()[b].set_grad(mg);
    } else {
      if (inv_scale != 1.0) ops::mul_(g, inv_scale);
      overflow |= nn::has_inf_or_nan(g);
      optimizer_params()[b].set_grad(g);
    }
  }
  // A rank may hold the only non-finite shard (ZeRO) or see it alone: every rank must skip together.
  return sum_across_ranks(overflow ? 1.0 : 0.0) > 0.0;
}

double DataParallelEngine::clip_grad_norm(double max_norm) {
  NoGradGuard no_grad;
  double squares = 0.0;
  if (units_) {
    squares = units_->grad_squares();  // over the shard group (hybrid: replicas hold the same shards)
  } else {
    for (const Tensor& s : stepped_)
      if (s.grad().defined()) squares += ops::sum_of_squares(s.grad());  // padding is zero
    // DDP's gradients are already whole on every rank; sharded ones add up across ranks.
    if (plan_.shard_optimizer_state) squares = sum_across_ranks(squares);
  }
  const double norm = std::sqrt(squares);
  if (max_norm > 0 && std::isfinite(norm)) {
    const double coef = max_norm / (norm + 1e-6);  // torch's clip_grad_norm_
    if (coef < 1.0)
      for (const Tensor& s : optimizer_params())
        if (s.grad().defined()) ops::mul_(s.grad(), coef);
  }
  return norm;
}

void DataParallelEngine::update_parameters() {
  if (units_) return units_->update_parameters();
  NoGradGuard no_grad;
  const int world = group_.size(), rank = group_.rank();
  // 16-bit: the stepped fp32 shard goes into this rank's part of the model (round to nearest even).
  // Offloaded: rounded on the host, then copied up while the next bucket is rounded.
  std::vector<PendingCopyHandle> uploads;
  for (size_t b = 0; b < masters_.size(); ++b) {
    const BucketLayout& L = layout_[b];
    const int64_t offset = plan_.shard_optimizer_state ? L.shard_offset(rank) : 0;
    const Tensor own = ops::narrow(state_[b]->params, 0, offset, masters_[b].numel());
    if (own.device() == masters_[b].device()) {
      ops::copy_(own, masters_[b]);
      continue;
    }
    Tensor source = masters_[b];
    if (own.dtype() != DType::f32) {
      MemTagScope tag(MemTag::communication);
      source = Tensor::empty_pinned(own.shape(), own.dtype());
      ops::copy_(source, masters_[b]);
    }
    uploads.push_back(copy_async(own, source));
  }
  for (const PendingCopyHandle& up : uploads) up->wait();  // the all-gather below reads them
  if (plan_.shard_optimizer_state) {
    struct Gather {
      BucketRange range;
      Tensor out;
      WorkHandle work;
      std::vector<int64_t> offsets;  // each bucket's shard offset within one rank's chunk
      int64_t chunk = 0;
    };
    std::vector<Gather> gathers;
    for (const BucketRange& r : plan_gather_groups(layout_, options_.allgather_bucket_size, world)) {
      Gather g{r, Tensor(), nullptr, {}, 0};
      for (int b = r.first; b < r.last; ++b) {
        g.offsets.push_back(g.chunk);
        g.chunk += layout_[b].shard_numel;
      }
      MemTagScope tag(MemTag::communication);
      Tensor in = Tensor::empty({g.chunk}, param_dtype_, state_[0]->params.device());
      for (int b = r.first; b < r.last; ++b)
        ops::copy_(ops::narrow(in, 0, g.offsets[b - r.first], layout_[b].shard_numel),
                   ops::narrow(state_[b]->params, 0, layout_[b].shard_offset(rank), layout_[b].shard_numel));
      g.out = Tensor::empty({g.chunk * world}, param_dtype_, in.device());
      g.work = group_.all_gather(g.out, in);
      gathers.push_back(std::move(g));
    }
    for (Gather& g : gathers) {
      g.work->wait();
      for (int q = 0; q < world; ++q)
        for (int b = g.range.first; b < g.range.last; ++b) {
          const int64_t s = layout_[b].shard_numel;
          ops::copy_(ops::narrow(state_[b]->params, 0, layout_[b].shard_offset(q), s),
                     ops::narrow(g.out, 0, q * g.chunk + g.offsets[b - g.range.first], s));
        }
    }
    record(EngineEvent::parameters_gathered, -1);
  }
  // The fp32 copies of the gradients were for this step only.
  for (const Tensor& s : stepped_) s.set_grad(Tensor());
}

void DataParallelEngine::reload_masters_from_model() {
  if (units_) return units_->reload_masters_from_model();
  NoGradGuard no_grad;
  for (size_t b = 0; b < masters_.size(); ++b) {
    const int64_t offset = plan_.shard_optimizer_state ? layout_[b].shard_offset(group_.rank()) : 0;
    ops::copy_(masters_[b], ops::narrow(state_[b]->params, 0, offset, masters_[b].numel()));
  }
}

nn::NamedTensors DataParallelEngine::master_state() const {
  nn::NamedTensors out;
  for (size_t b = 0; b < masters().size(); ++b) out.emplace_back(master_key(b), masters()[b]);
  return out;
}

void DataParallelEngine::load_master_state(const nn::NamedTensors& state) {
  NoGradGuard no_grad;
  const std::vector<Tensor>& masters = this->masters();
  for (size_t b = 0; b < masters.size(); ++b) {
    const std::string key = master_key(b);
    const Tensor* found = nullptr;
    for (const auto& [name, t] : state)
      if (name == key) found = &t;
    SL_CHECK(found != nullptr, "data parallel: checkpoint has no '", key, "' (saved with another preset, world ",
             "size or bucket size?)");
    SL_CHECK(found->numel() == masters[b].numel(), "data parallel: checkpoint '", key, "' has ", found->numel(),
             " elements, this rank's shard has ", masters[b].numel(), " (saved with another world size or bucket size?)");
    ops::copy_(masters[b], ops::reshape(*found, masters[b].shape()));
  }
  if (units_) units_->update_parameters();  // the 16-bit shards follow their masters
}

ModelStateBytes DataParallelEngine::model_state_bytes(const nn::Optimizer& optimizer) const {
  ModelStateBytes m = units_ ? units_->model_state_bytes() : ModelStateBytes{};
  for (const auto& st : state_) {
    m.parameters += static_cast<double>(st->params.nbytes());
    m.gradients += static_cast<double>(plan_.shard_gradients ? st->grad_shard.nbytes() : st->grads.nbytes());
  }
  for (const Tensor& t : masters_) m.optimizer_state += static_cast<double>(t.nbytes());
  for (const auto& [name, t] : optimizer.state_dict())
    if (name != "step") m.optimizer_state += static_cast<double>(t.nbytes());
  return m;
}

ModelStateBytes DataParallelEngine::model_state_theory(OptimizerStateKind optimizer) const {
  return zero_model_state_theory(options_.preset, trained_numel_, shard_group().size(), param_dtype_, reduce_dtype_,
                                 optimizer_bytes_per_param(optimizer, has_master_weights()));
}

void DataParallelEngine::gather_full_parameters() {
  if (units_) units_->gather_all();
}

void DataParallelEngine::free_full_parameters() {
  if (units_) units_->free_all();
}

std::vector<ParameterShard> DataParallelEngine::parameter_shards() const {
  std::vector<ParameterShard> out(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    out[i].param = static_cast<int>(i);
    out[i].name = i < names_.size() ? names_[i] : std::string();
    out[i].shape = params_[i].shape();
  }
  const int rank = shard_group().rank();
  for (size_t b = 0; b < buckets().size(); ++b) {
    const BucketLayout& L = buckets()[b];
    const bool sharded = plan_.shard_optimizer_state;
    const int64_t lo = sharded ? L.shard_offset(rank) : 0, hi = sharded ? lo + L.shard_numel : L.padded_numel;
    for (const BucketSlot& slot : L.slots) {
      const int64_t first = std::max(lo, slot.offset), last = std::min(hi, slot.offset + slot.numel);
      if (first < last)
        out[slot.param].owned.push_back({static_cast<int>(b), first, first - slot.offset, last - first});
    }
  }
  return out;
}

}  // namespace shardlab::dist
