// The AdamW update of one element, shared by the CUDA AdamW kernels (per tensor, multi-tensor and
// 8-bit), with the step's scalar coefficients computed on the host exactly as core/cpu/optim.cc
// does: in f64, rounded once to the math type S (f32, or f64 for f64 parameters).
#pragma once

#include <cmath>

#include "core/ops/optim.h"

namespace shardlab::cuda {

template <typename S>
struct AdamWCoeffs {
  S b1, b2, decay, step_size, inv_bc2_sqrt, eps;
};

template <typename S>
AdamWCoeffs<S> adamw_coeffs(const ops::AdamWHyper& h) {
  const double t = static_cast<double>(h.step);
  return {static_cast<S>(h.beta1),
          static_cast<S>(h.beta2),
          static_cast<S>(1.0 - h.lr * h.weight_decay),
          static_cast<S>(h.lr / (1.0 - std::pow(h.beta1, t))),
          static_cast<S>(1.0 / std::sqrt(1.0 - std::pow(h.beta2, t))),
          static_cast<S>(h.eps)};
}

// torch.optim.AdamW on one element, in the CPU kernel's order: decoupled decay, the moments
// (m, v hold the old state on entry and the new one on return), the bias-corrected step.
template <typename S>
__device__ __forceinline__ S adamw_update(S p, S g, S& m, S& v, const AdamWCoeffs<S>& c) {
  p *= c.decay;
  m = c.b1 * m + (S(1) - c.b1) * g;
  v = c.b2 * v + (S(1) - c.b2) * g * g;
  return p - c.step_size * m / (sqrt(v) * c.inv_bc2_sqrt + c.eps);
}

}  // namespace shardlab::cuda
