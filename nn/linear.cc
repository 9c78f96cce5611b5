// Linear layer.
#include "nn/linear.h"

#include "autograd/functions.h"
#include "nn/init.h"

namespace shardlab::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, uint64_t seed, DType dtype, double init_std)
    : UnaryModule("Linear"), in_features_(in_features), out_features_(out_features), has_bias_(bias) {
  const Shape shape = {out_features, in_features};
  register_parameter("weight", init_std > 0 ? init::normal(shape, init_std, seed, dtype)
                                            : init::linear_default(shape, in_features, seed, dtype));
  if (bias) register_parameter("bias", init::linear_default({out_features}, in_features, seed + 1, dtype));
}

Tensor Linear::forward(const Tensor& x) {
  SL_CHECK(x.dim() >= 1 && x.size(-1) == in_features_, "Linear: input of shape ", shape_str(x.shape()),
           " does not end in in_features = ", in_features_);
  // transpose() is a view: the GEMM reads W with swapped strides, no copy.
  Tensor y = matmul(x, transpose(tensor("weight"), 0, 1));
  return has_bias_ ? y + tensor("bias") : y;
}

}  // namespace shardlab::nn
