// Optimizers over a list of parameters: AdamW (decoupled weight decay, as torch.optim.AdamW) and
// SGD (with momentum/Nesterov, as torch.optim.SGD). State lives in the memory ledger under
// `optimizer_state`; the learning rate is set per step by the caller (see lr_schedule.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/ops/optim.h"
#include "core/tensor.h"
#include "nn/module.h"

namespace shardlab::nn {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params);
  virtual ~Optimizer() = default;
  // Applies one update to every parameter that has a gradient.
  virtual void step() = 0;
  // Drops the gradients (set_to_none, torch's default since 2.0).
  void zero_grad();
  void set_lr(double lr) { lr_ = lr; }
  double lr() const { return lr_; }
  int64_t steps_taken() const { return steps_; }
  const std::vector<Tensor>& params() const { return params_; }
  // The optimizer's tensors by name ("<index>.exp_avg", ...) plus "step", for checkpoints.
  virtual NamedTensors state_dict() const = 0;
  virtual void load_state_dict(const NamedTensors& state) = 0;

 protected:
  std::vector<Tensor> params_;
  double lr_ = 0.0;
  int64_t steps_ = 0;
};

class AdamW final : public Optimizer {
 public:
  AdamW(std::vector<Tensor> params, double lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0.01);
  void step() override;
  NamedTensors state_dict() const override;
  void load_state_dict(const NamedTensors& state) override;

 private:
  double beta1_, beta2_, eps_, weight_decay_;
  std::vector<Tensor> exp_avg_, exp_avg_sq_;  // created lazily at the first step
};

class SGD final : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, double lr, double momentum = 0.0, double weight_decay = 0.0, bool nesterov = false);
  void step() override;
  NamedTensors state_dict() const override;
  void load_state_dict(const NamedTensors& state) override;

 private:
  double momentum_, weight_decay_;
  bool nesterov_;
  std::vector<Tensor> momentum_buffer_;
  std::vector<bool> has_buffer_;
};

// Scales all gradients so that their global L2 norm is at most max_norm (torch's
// clip_grad_norm_: coefficient max_norm / (norm + 1e-6), never above 1). Returns the norm before
// clipping; a NaN or infinite norm is returned as is and nothing is scaled.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);
// The global L2 norm of the gradients (f64 accumulation).
double grad_norm(const std::vector<Tensor>& params);

}  // namespace shardlab::nn
