// AdamW8bit: lazily allocated 8-bit state, the fused 8-bit step, and checkpoints of codes + absmax.
#include "nn/optimizer_8bit.h"

#include "autograd/grad_mode.h"
#include "core/ops.h"
#include "nn/optimizer_state.h"

namespace shardlab::nn {

namespace {
Tensor new_state(const Shape& shape, DType dtype, Device device) { return optimizer_state::zeros(shape, dtype, device); }
const Tensor* find(const NamedTensors& state, const std::string& name) { return optimizer_state::find(state, name); }
Tensor load(const NamedTensors& state, const std::string& name, const Shape& shape, DType dtype, Device device) {
  return optimizer_state::load(state, name, shape, dtype, device, "AdamW8bit");
}
}  // namespace

AdamW8bit::AdamW8bit(std::vector<Tensor> params, double lr, double beta1, double beta2, double eps,
                     double weight_decay)
    : Optimizer(std::move(params)), beta1_(beta1), beta2_(beta2), eps_(eps), weight_decay_(weight_decay) {
  lr_ = lr;
  state_.resize(params_.size());
}

void AdamW8bit::step() {
  NoGradGuard no_grad;
  ++steps_;
  ops::AdamWHyper h{lr_, beta1_, beta2_, eps_, weight_decay_, steps_};
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    State& s = state_[i];
    if (!s.m_codes.defined()) {
      // Zero codes with zero absmax dequantize to exact zeros, as bitsandbytes' fresh state.
      const Shape blocks{ops::num_blocks_8bit(p.numel())};
      // State lives with its parameter (on the GPU for a GPU model).
      const Device d = p.device();
      s = {new_state(p.shape(), DType::u8, d), new_state(p.shape(), DType::u8, d), new_state(blocks, DType::f32, d),
           new_state(blocks, DType::f32, d)};
    }
    ops::adamw_8bit_step(p, ops::contiguous(g), s.m_codes, s.v_codes, s.m_absmax, s.v_absmax, h);
  }
}

NamedTensors AdamW8bit::state_dict() const {
  NamedTensors out;
  out.emplace_back("step", Tensor::scalar(static_cast<double>(steps_), DType::i64));
  for (size_t i = 0; i < params_.size(); ++i) {
    const State& s = state_[i];
    if (!s.m_codes.defined()) continue;
    const std::string k = std::to_string(i);
    out.emplace_back(k + ".exp_avg_codes", s.m_codes);
    out.emplace_back(k + ".exp_avg_absmax", s.m_absmax);
    out.emplace_back(k + ".exp_avg_sq_codes", s.v_codes);
    out.emplace_back(k + ".exp_avg_sq_absmax", s.v_absmax);
  }
  return out;
}

void AdamW8bit::load_state_dict(const NamedTensors& state) {
  NoGradGuard no_grad;
  const Tensor* step = find(state, "step");
  SL_CHECK(step != nullptr, "AdamW8bit load_state_dict: missing 'step'");
  // Every other entry must be one of ours: a 32-bit AdamW checkpoint ("<i>.exp_avg") is refused
  // rather than silently dropped.
  for (auto& [n, t] : state) {
    bool known = n == "step";
    for (size_t i = 0; i < params_.size() && !known; ++i)
      for (const char* suffix : {".exp_avg_codes", ".exp_avg_absmax", ".exp_avg_sq_codes", ".exp_avg_sq_absmax"})
        known |= n == std::to_string(i) + suffix;
    SL_CHECK(known, "AdamW8bit load_state_dict: unexpected entry '", n, "' (", dtype_name(t.dtype()), " ",
             shape_str(t.shape()), "); is this a 32-bit optimizer's checkpoint?");
  }
  steps_ = static_cast<int64_t>(step->item());
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string k = std::to_string(i);
    if (find(state, k + ".exp_avg_codes") == nullptr) continue;
    const Shape& shape = params_[i].shape();
    const Shape blocks{ops::num_blocks_8bit(params_[i].numel())};
    const Device d = params_[i].device();
    state_[i] = {load(state, k + ".exp_avg_codes", shape, DType::u8, d),
                 load(state, k + ".exp_avg_sq_codes", shape, DType::u8, d),
                 load(state, k + ".exp_avg_absmax", blocks, DType::f32, d),
                 load(state, k + ".exp_avg_sq_absmax", blocks, DType::f32, d)};
  }
}

}  // namespace shardlab::nn
