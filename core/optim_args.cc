// check_optimizer_update (see core/optim_args.h).
#include "core/optim_args.h"

#include "core/checks.h"
#include "core/error.h"

namespace shardlab::ops {

void check_optimizer_update(const char* op, const Tensor& param, const Tensor& grad, const Tensor& state,
                            DType state_dtype) {
  check_same_dtype(op, param, grad);
  SL_CHECK(param.is_contiguous() && grad.is_contiguous() && state.is_contiguous(), op,
           ": parameter, gradient and state must be contiguous (shapes ", shape_str(param.shape()), ", ",
           shape_str(grad.shape()), ", ", shape_str(state.shape()), ")");
  SL_CHECK(param.numel() == grad.numel() && param.numel() == state.numel(), op, ": parameter ",
           shape_str(param.shape()), ", gradient ", shape_str(grad.shape()), " and state ", shape_str(state.shape()),
           " differ in size");
  SL_CHECK(state.dtype() == state_dtype, op, ": optimizer state must be ", dtype_name(state_dtype), " for a ",
           dtype_name(param.dtype()), " parameter, got ", dtype_name(state.dtype()));
}

}  // namespace shardlab::ops
