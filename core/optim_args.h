// The argument checks of the fused optimizer steps that do not depend on the backend, shared by
// the CPU and CUDA kernels: one dtype for parameter and gradient, contiguous tensors of one size,
// and the state dtype a parameter's optimizer keeps. Each backend checks devices itself first.
#pragma once

#include "core/tensor.h"

namespace shardlab::ops {

// The optimizer state dtype of a parameter: f64 for f64, f32 otherwise (16-bit parameters too).
inline DType optimizer_state_dtype(DType param) { return param == DType::f64 ? DType::f64 : DType::f32; }

// param and grad of one dtype, param/grad/state contiguous with equal sizes, state of
// `state_dtype`; errors name `op` and the shapes.
void check_optimizer_update(const char* op, const Tensor& param, const Tensor& grad, const Tensor& state,
                            DType state_dtype);

}  // namespace shardlab::ops
