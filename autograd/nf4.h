// The differentiable NF4 linear (QLoRA's frozen 4-bit base projection): gradients flow to the
// input only; the quantized weight is frozen and asking for its gradient is an error.
#pragma once

#include "core/ops/nf4.h"

namespace shardlab {

// y (..., N) = x (..., K) @ dequant(w)^T with w a 2-D (N, K) NF4 weight; see ops::nf4_linear.
Tensor nf4_linear(const Tensor& x, const Nf4Tensor& w);

}  // namespace shardlab
