// fp32 master weights for a bf16/fp16 model (mixed-precision training as in Micikevicius et al.
// and DeepSpeed's FP16/BF16 optimizers): the optimizer steps fp32 copies, the model keeps 16-bit
// parameters that are refreshed from the masters (round to nearest even) after every step.
#pragma once

#include <vector>

#include "core/tensor.h"
#include "nn/loss_scaler.h"
#include "nn/optimizer.h"

namespace shardlab::nn {

class MasterWeights {
 public:
  // model_params: the model's floating parameters (typically bf16/f16 leaves). The fp32 copies are
  // allocated under MemTag::optimizer_state, since ZeRO counts them with the optimizer
  // (12 bytes/param = master + exp_avg + exp_avg_sq).
  explicit MasterWeights(std::vector<Tensor> model_params);

  // The fp32 leaves (requires_grad) to hand to an optimizer: nn::AdamW(masters(), ...).
  const std::vector<Tensor>& masters() const { return masters_; }
  const std::vector<Tensor>& model_params() const { return model_params_; }
  // Bytes held by the masters (4 per parameter).
  int64_t master_bytes() const;

  // Sets each master's grad to its model parameter's grad times inv_scale, converted to f32 in
  // one pass (no 16-bit intermediate), and returns true when any of them is inf or NaN. A model
  // parameter without a gradient leaves its master without one (the optimizer skips it). The
  // model parameters' 16-bit gradients are dropped once copied.
  bool grads_to_masters(double inv_scale = 1.0);
  // Writes every master into its model parameter, rounding to nearest even.
  void masters_to_model();
  // Drops the gradients of the model parameters and of the masters.
  void zero_grad();

  // One mixed-precision step: grads_to_masters(1/scale); on overflow nothing is stepped (model,
  // masters and optimizer state stay bit-identical), otherwise optimizer.step() on the masters and
  // masters_to_model(). Then scaler->update(overflow) and zero_grad(). Returns true when the step
  // was applied. `optimizer` must be stepping masters(); scaler may be null (scale 1, no update).
  bool step(Optimizer& optimizer, DynamicLossScaler* scaler = nullptr);

 private:
  std::vector<Tensor> model_params_;
  std::vector<Tensor> masters_;
};

}  // namespace shardlab::nn
