// fp32 master weights: allocation under optimizer_state, grad hand-over and write-back.
#include "nn/master_weights.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "core/memory_ledger.h"
#include "core/ops.h"

namespace shardlab::nn {

MasterWeights::MasterWeights(std::vector<Tensor> model_params) : model_params_(std::move(model_params)) {
  NoGradGuard no_grad;
  MemTagScope tag(MemTag::optimizer_state);
  masters_.reserve(model_params_.size());
  for (size_t i = 0; i < model_params_.size(); ++i) {
    const Tensor& p = model_params_[i];
    SL_CHECK(p.defined() && is_floating(p.dtype()), "MasterWeights: parameter ", i, " (shape ",
             p.defined() ? shape_str(p.shape()) : std::string("undefined"), ", dtype ",
             p.defined() ? dtype_name(p.dtype()) : "none", ") is not a floating tensor");
    // Widening bf16/f16 -> f32 is exact, so the masters start equal to the model.
    Tensor m = Tensor::empty(p.shape(), DType::f32, p.device());
    ops::copy_(m, p);
    m.set_requires_grad(true);
    masters_.push_back(m);
  }
}

int64_t MasterWeights::master_bytes() const {
  int64_t bytes = 0;
  for (const Tensor& m : masters_) bytes += m.nbytes();
  return bytes;
}

bool MasterWeights::grads_to_masters(double inv_scale) {
  NoGradGuard no_grad;
  MemTagScope tag(MemTag::gradient);
  bool overflow = false;
  // On a GPU every host read of a flag waits for the device: the per-tensor sums of the unscaled
  // gradients are added up there and read once for the whole model (the check DeepSpeed makes: a
  // sum is finite iff its elements are). On the CPU the fused scan of unscale_into is cheaper.
  Tensor device_total;
  for (size_t i = 0; i < model_params_.size(); ++i) {
    Tensor g = model_params_[i].grad();
    if (!g.defined()) {
      masters_[i].set_grad(Tensor());
      continue;
    }
    Tensor mg = masters_[i].grad();
    if (!mg.defined() || mg.shape() != g.shape()) mg = Tensor::empty(g.shape(), DType::f32, g.device());
    if (g.device().is_cpu()) {
      overflow |= unscale_into(mg, g, inv_scale);
    } else {
      ops::copy_(mg, ops::mul_scalar(g, inv_scale));
      const Tensor s = ops::to_dtype(ops::sum(mg), DType::f64);
      device_total = device_total.defined() ? ops::add(device_total, s) : s;
    }
    masters_[i].set_grad(mg);
    // The 16-bit gradient has served its purpose: freeing it now keeps 4 B/param of gradients
    // (the f32 copy) instead of 6 until the next step.
    model_params_[i].set_grad(Tensor());
  }
  if (device_total.defined()) overflow |= !std::isfinite(device_total.item());
  return overflow;
}

void MasterWeights::masters_to_model() {
  NoGradGuard no_grad;
  // copy_ converts through Eigen's bfloat16/half constructors, which round to nearest even.
  for (size_t i = 0; i < masters_.size(); ++i) ops::copy_(model_params_[i], masters_[i]);
}

void MasterWeights::zero_grad() {
  for (const Tensor& p : model_params_) p.set_grad(Tensor());
  for (const Tensor& m : masters_) m.set_grad(Tensor());
}

bool MasterWeights::step(Optimizer& optimizer, DynamicLossScaler* scaler) {
  const double inv = scaler ? 1.0 / scaler->scale() : 1.0;
  const bool overflow = grads_to_masters(inv);
  if (!overflow) {
    optimizer.step();
    masters_to_model();
  }
  if (scaler) scaler->update(overflow);
  zero_grad();
  return !overflow;
}

}  // namespace shardlab::nn
