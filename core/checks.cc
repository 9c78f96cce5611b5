// Shared argument checks (see checks.h).
#include "core/checks.h"

namespace shardlab {

void check_cpu(const char* op, std::initializer_list<Tensor> tensors) {
  int i = 0;
  for (const Tensor& t : tensors) {
    SL_CHECK(t.defined(), op, ": argument ", i, " is an undefined tensor");
    SL_CHECK(t.device().is_cpu(), op, ": argument ", i, " is on ", t.device().str(),
             " but this op has only a CPU kernel in this build");
    ++i;
  }
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  SL_CHECK(a.device() == b.device(), op, ": device mismatch: ", a.device().str(), " tensor of shape ",
           shape_str(a.shape()), " and ", b.device().str(), " tensor of shape ", shape_str(b.shape()));
}

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  SL_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch: ", dtype_name(a.dtype()), " tensor of shape ",
           shape_str(a.shape()), " and ", dtype_name(b.dtype()), " tensor of shape ", shape_str(b.shape()));
}

void check_float(const char* op, const Tensor& t) {
  SL_CHECK(is_floating(t.dtype()), op, ": expected a floating tensor, got ", dtype_name(t.dtype()), " of shape ",
           shape_str(t.shape()));
}

void check_dim(const char* op, const Tensor& t, int64_t ndim, const char* what) {
  SL_CHECK(t.dim() == ndim, op, ": ", what, " must have ", ndim, " dims, got shape ", shape_str(t.shape()));
}

}  // namespace shardlab
