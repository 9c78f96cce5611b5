// AdamW with 8-bit state (bitsandbytes' blockwise Adam8bit, `optimizer: adamw_8bit`): m and v are
// u8 codes plus one f32 absmax per block of 256 elements (see core/ops/optim_8bit.h for the map).
#pragma once

#include <vector>

#include "core/ops/optim_8bit.h"
#include "nn/optimizer.h"

namespace shardlab::nn {

// Same interface and hyperparameters as AdamW. State per parameter (tagged optimizer_state):
// exp_avg_codes / exp_avg_sq_codes (u8, the parameter's shape) and exp_avg_absmax /
// exp_avg_sq_absmax (f32, ceil(numel / 256)): 2 bytes per element + 8 bytes per block.
// Unlike bitsandbytes (which keeps tensors under 4096 elements in 32-bit), every parameter is 8-bit.
class AdamW8bit final : public Optimizer {
 public:
  AdamW8bit(std::vector<Tensor> params, double lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
            double weight_decay = 0.01);
  void step() override;
  // "step" plus "<i>.exp_avg_codes", "<i>.exp_avg_absmax", "<i>.exp_avg_sq_codes", "<i>.exp_avg_sq_absmax".
  NamedTensors state_dict() const override;
  void load_state_dict(const NamedTensors& state) override;

 private:
  struct State {
    Tensor m_codes, v_codes, m_absmax, v_absmax;  // undefined until the parameter's first step
  };
  double beta1_, beta2_, eps_, weight_decay_;
  std::vector<State> state_;
};

}  // namespace shardlab::nn
