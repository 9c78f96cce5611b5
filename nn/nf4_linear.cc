// Nf4Linear: buffers for the NF4 weight, forward through the differentiable nf4_linear op.
#include "nn/nf4_linear.h"

#include "autograd/nf4.h"

namespace shardlab::nn {

Nf4Linear::Nf4Linear(const Nf4Tensor& weight, DType compute_dtype)
    : UnaryModule("Nf4Linear"), shape_(weight.shape), original_dtype_(weight.dtype), compute_dtype_(compute_dtype) {
  ops::check_nf4("Nf4Linear", weight);
  SL_CHECK(shape_.size() == 2, "Nf4Linear: the weight must be 2-D (out_features, in_features), got shape ",
           shape_str(shape_));
  SL_CHECK(is_floating(compute_dtype), "Nf4Linear: compute dtype ", dtype_name(compute_dtype),
           " is not a floating dtype (weight of shape ", shape_str(shape_), ")");
  // Frozen base weights are model state, not scratch: the ledger counts them as parameters.
  const std::pair<const char*, Tensor> buffers[] = {{"weight", weight.packed},
                                                    {"weight_absmax", weight.absmax_codes},
                                                    {"weight_nested_absmax", weight.nested_absmax},
                                                    {"weight_nested_offset", weight.offset}};
  for (const auto& [name, t] : buffers) {
    t.retag(MemTag::parameter);
    register_buffer(name, t);
  }
}

std::shared_ptr<Nf4Linear> Nf4Linear::quantize(const Tensor& weight, DType compute_dtype) {
  SL_CHECK(weight.defined() && weight.dim() == 2, "Nf4Linear::quantize: the weight must be 2-D (out_features, "
           "in_features), got shape ", weight.defined() ? shape_str(weight.shape()) : "undefined");
  MemTagScope tag(MemTag::parameter);
  return std::make_shared<Nf4Linear>(ops::nf4_quantize(weight), compute_dtype);
}

Nf4Tensor Nf4Linear::weight() const {
  return {tensor("weight"), tensor("weight_absmax"), tensor("weight_nested_absmax"), tensor("weight_nested_offset"),
          shape_, original_dtype_};
}

Tensor Nf4Linear::forward(const Tensor& x) {
  SL_CHECK(x.dtype() == compute_dtype_, "Nf4Linear (", out_features(), " x ", in_features(), "): input of shape ",
           shape_str(x.shape()), " is ", dtype_name(x.dtype()), " but the compute dtype is ", dtype_name(compute_dtype_));
  return nf4_linear(x, weight());
}

}  // namespace shardlab::nn
