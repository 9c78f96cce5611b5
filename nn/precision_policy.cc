// Precision policy construction and its one-line description.
#include "nn/precision_policy.h"

#include "core/error.h"

namespace shardlab::nn {

PrecisionPolicy make_precision_policy(bool bf16, bool fp16, std::optional<DType> reduce_dtype) {
  SL_CHECK(!(bf16 && fp16), "precision: bf16 and fp16 cannot both be on");
  PrecisionPolicy p;
  p.param_dtype = bf16 ? DType::bf16 : fp16 ? DType::f16 : DType::f32;
  p.loss_scaling = fp16;
  p.reduce_dtype = reduce_dtype.value_or(p.param_dtype);
  SL_CHECK(p.reduce_dtype == DType::f32 || p.reduce_dtype == DType::bf16 || p.reduce_dtype == DType::f16,
           "precision: gradients can be reduced in f32, bf16 or f16, not ", dtype_name(p.reduce_dtype));
  SL_CHECK(p.reduce_dtype == DType::f32 || p.uses_master_weights(), "precision: reducing ",
           dtype_name(p.param_dtype), " gradients in ", dtype_name(p.reduce_dtype), " would lose precision for nothing");
  return p;
}

std::string PrecisionPolicy::describe() const {
  std::string s = std::string("params ") + dtype_name(param_dtype);
  if (uses_master_weights()) s += std::string(", masters ") + dtype_name(master_dtype);
  s += std::string(", reduce ") + dtype_name(reduce_dtype) + ", loss " + dtype_name(loss_dtype);
  s += loss_scaling ? ", dynamic loss scaling" : ", no loss scaling";
  return s;
}

}  // namespace shardlab::nn
