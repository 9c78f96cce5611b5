// Argument checks shared by every op, each producing an error that names the op, the shapes and
// the dtypes or devices at fault.
#pragma once

#include <initializer_list>

#include "core/tensor.h"

namespace shardlab {

// Every tensor defined, on the same device, and (for now) on the CPU when no other backend has a
// kernel for the op.
void check_cpu(const char* op, std::initializer_list<Tensor> tensors);
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b);
void check_float(const char* op, const Tensor& t);
void check_dim(const char* op, const Tensor& t, int64_t ndim, const char* what);

}  // namespace shardlab
