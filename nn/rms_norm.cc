// RMSNorm layer: the fused rms_norm op with its weight.
#include "nn/rms_norm.h"

#include "autograd/functions.h"

namespace shardlab::nn {

RMSNorm::RMSNorm(int64_t dim, double eps, DType dtype) : UnaryModule("RMSNorm"), eps_(eps) {
  register_parameter("weight", Tensor::ones({dim}, dtype));
}

Tensor RMSNorm::forward(const Tensor& x) { return rms_norm(x, tensor("weight"), eps_); }

}  // namespace shardlab::nn
