// The argument checks of rms_norm_fwd / rms_norm_bwd that do not depend on the backend, shared by
// the CPU and CUDA kernels: float x, weight (D,) of x's dtype with D = x's last dim.
#pragma once

#include <cstdint>

#include "core/checks.h"
#include "core/error.h"
#include "core/tensor.h"

namespace shardlab::ops {

// Returns D; errors name `op` and the shapes.
inline int64_t check_rms_args(const char* op, const Tensor& x, const Tensor& weight) {
  check_float(op, x);
  check_same_dtype(op, x, weight);
  SL_CHECK(x.dim() >= 1, op, ": x must have at least one dim, got shape ", shape_str(x.shape()));
  const int64_t d = x.size(-1);
  SL_CHECK(d > 0, op, ": x's last dim must be non-empty, got shape ", shape_str(x.shape()));
  SL_CHECK(weight.dim() == 1 && weight.size(0) == d, op, ": weight must have shape ", shape_str({d}), " to match x of shape ",
           shape_str(x.shape()), ", got ", shape_str(weight.shape()));
  return d;
}

}  // namespace shardlab::ops
