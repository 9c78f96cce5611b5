// AdamW, SGD and gradient clipping.
#include "nn/optimizer.h"

#include <cmath>
#include <vector>

#include "autograd/grad_mode.h"
#include "core/ops.h"
#include "nn/optimizer_state.h"

namespace shardlab::nn {

namespace {
DType state_dtype(const Tensor& p) { return p.dtype() == DType::f64 ? DType::f64 : DType::f32; }
Tensor new_state(const Tensor& p) { return optimizer_state::zeros(p.shape(), state_dtype(p), p.device()); }
// A fresh state tensor for `param` holding a copy of state[name].
Tensor load_state(const NamedTensors& state, const std::string& name, const Tensor& param, const char* who) {
  return optimizer_state::load(state, name, param.shape(), state_dtype(param), param.device(), who);
}
int64_t load_step(const NamedTensors& state, const char* who) {
  const Tensor* step = optimizer_state::find(state, "step");
  SL_CHECK(step != nullptr, who, " load_state_dict: missing 'step'");
  return static_cast<int64_t>(step->item());
}
}  // namespace

Optimizer::Optimizer(std::vector<Tensor> params) : params_(std::move(params)) {
  for (size_t i = 0; i < params_.size(); ++i)
    SL_CHECK(params_[i].requires_grad(), "optimizer: parameter ", i, " (shape ", shape_str(params_[i].shape()),
             ") does not require grad");
}

void Optimizer::zero_grad() {
  for (const Tensor& p : params_) p.set_grad(Tensor());
}

AdamW::AdamW(std::vector<Tensor> params, double lr, double beta1, double beta2, double eps, double weight_decay)
    : Optimizer(std::move(params)), beta1_(beta1), beta2_(beta2), eps_(eps), weight_decay_(weight_decay) {
  lr_ = lr;
  exp_avg_.resize(params_.size());
  exp_avg_sq_.resize(params_.size());
}

void AdamW::step() {
  NoGradGuard no_grad;
  ++steps_;
  ops::AdamWHyper h{lr_, beta1_, beta2_, eps_, weight_decay_, steps_};
  // The parameters with a gradient, grouped by device (normally one group): one multi-tensor op per
  // group, which on a GPU is one launch per dtype instead of one per parameter.
  struct Group {
    Device device;
    std::vector<Tensor> params, grads, exp_avgs, exp_avg_sqs;
  };
  std::vector<Group> groups;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (!exp_avg_[i].defined()) {
      exp_avg_[i] = new_state(p);
      exp_avg_sq_[i] = new_state(p);
    }
    Group* group = nullptr;
    for (Group& candidate : groups)
      if (candidate.device == p.device()) group = &candidate;
    if (group == nullptr) group = &groups.emplace_back(Group{p.device(), {}, {}, {}, {}});
    group->params.push_back(p);
    group->grads.push_back(ops::contiguous(g));
    group->exp_avgs.push_back(exp_avg_[i]);
    group->exp_avg_sqs.push_back(exp_avg_sq_[i]);
  }
  for (const Group& group : groups)
    ops::adamw_step_multi(group.params, group.grads, group.exp_avgs, group.exp_avg_sqs, h);
}

NamedTensors AdamW::state_dict() const {
  NamedTensors out;
  out.emplace_back("step", Tensor::scalar(static_cast<double>(steps_), DType::i64));
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!exp_avg_[i].defined()) continue;
    out.emplace_back(std::to_string(i) + ".exp_avg", exp_avg_[i]);
    out.emplace_back(std::to_string(i) + ".exp_avg_sq", exp_avg_sq_[i]);
  }
  return out;
}

void AdamW::load_state_dict(const NamedTensors& state) {
  NoGradGuard no_grad;
  steps_ = load_step(state, "AdamW");
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string key = std::to_string(i) + ".exp_avg";
    if (optimizer_state::find(state, key) == nullptr) continue;
    exp_avg_[i] = load_state(state, key, params_[i], "AdamW");
    exp_avg_sq_[i] = load_state(state, std::to_string(i) + ".exp_avg_sq", params_[i], "AdamW");
  }
}

SGD::SGD(std::vector<Tensor> params, double lr, double momentum, double weight_decay, bool nesterov)
    : Optimizer(std::move(params)), momentum_(momentum), weight_decay_(weight_decay), nesterov_(nesterov) {
  lr_ = lr;
  SL_CHECK(!nesterov || momentum > 0.0, "SGD: nesterov needs momentum > 0");
  momentum_buffer_.resize(params_.size());
  has_buffer_.assign(params_.size(), false);
}

void SGD::step() {
  NoGradGuard no_grad;
  ++steps_;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (momentum_ != 0.0 && !momentum_buffer_[i].defined()) momentum_buffer_[i] = new_state(p);
    ops::SgdHyper h{lr_, momentum_, weight_decay_, nesterov_, !has_buffer_[i]};
    ops::sgd_step(p, ops::contiguous(g), momentum_buffer_[i], h);
    has_buffer_[i] = momentum_ != 0.0;
  }
}

NamedTensors SGD::state_dict() const {
  NamedTensors out;
  out.emplace_back("step", Tensor::scalar(static_cast<double>(steps_), DType::i64));
  for (size_t i = 0; i < params_.size(); ++i)
    if (has_buffer_[i]) out.emplace_back(std::to_string(i) + ".momentum_buffer", momentum_buffer_[i]);
  return out;
}

void SGD::load_state_dict(const NamedTensors& state) {
  NoGradGuard no_grad;
  steps_ = load_step(state, "SGD");
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string key = std::to_string(i) + ".momentum_buffer";
    if (optimizer_state::find(state, key) == nullptr) continue;
    momentum_buffer_[i] = load_state(state, key, params_[i], "SGD");
    has_buffer_[i] = true;
  }
}

double grad_norm(const std::vector<Tensor>& params) {
  double total = 0.0;
  for (const Tensor& p : params)
    if (p.grad().defined()) total += ops::sum_of_squares(p.grad());
  return std::sqrt(total);
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  const double norm = grad_norm(params);
  if (!std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0)
    for (const Tensor& p : params)
      if (p.grad().defined()) ops::mul_(p.grad(), coef);
  return norm;
}

}  // namespace shardlab::nn
