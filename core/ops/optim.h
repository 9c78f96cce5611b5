// Fused optimizer update kernels: one pass over a parameter, its gradient and its state.
// They run under no-grad by construction (raw ops) and bump the versions of what they write.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace shardlab::ops {

struct AdamWHyper {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  int64_t step = 1;  // 1-based step used for bias correction
};
// torch.optim.AdamW: p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). param may be f32/f64/bf16/f16 (math in
// f32, or f64 for f64); grad has param's dtype; m and v are f32 (f64 for f64 params). All
// contiguous, same numel.
void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, const AdamWHyper& h);
// adamw_step(params[i], grads[i], exp_avgs[i], exp_avg_sqs[i], h) for every i, as one op: on a GPU
// one launch per parameter dtype instead of one per tensor (cuda/multi_tensor_adamw.h); on the CPU
// the same per-tensor updates, bit for bit. The four lists have equal lengths; every tensor is on
// the first parameter's device; params may mix dtypes; no two entries may share memory (a GPU
// updates them all at once). All entries are checked before any is written. An empty list does
// nothing.
void adamw_step_multi(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                      const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                      const AdamWHyper& h);

struct SgdHyper {
  double lr = 1e-2;
  double momentum = 0.0;
  double weight_decay = 0.0;  // L2 (added to the gradient), as torch.optim.SGD
  bool nesterov = false;
  bool first_step = true;     // torch initialises the momentum buffer with the first gradient
};
// torch.optim.SGD (dampening 0). momentum_buffer is f32 (f64 for f64) or undefined when momentum == 0.
void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdHyper& h);

// Sum of squares of all elements, in f64 (for global-norm clipping).
double sum_of_squares(const Tensor& t);

}  // namespace shardlab::ops
