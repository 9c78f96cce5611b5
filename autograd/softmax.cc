// Differentiable softmax and log_softmax. Both save only their output: the backward kernels
// (core/cpu/softmax.cc) need y, not x.
#include "autograd/functions.h"
#include "autograd/record.h"

namespace shardlab {

Tensor softmax(const Tensor& t, int64_t dim) {
  Tensor y = ops::softmax(t, dim);
  if (needs_grad({t}))
    record("softmax", {t}, {y}, [dim, sy = SavedTensor(y)](const Grads& g) {
      return Grads{ops::softmax_backward(g[0], sy.unpack("softmax"), dim)};
    });
  return y;
}

Tensor log_softmax(const Tensor& t, int64_t dim) {
  Tensor y = ops::log_softmax(t, dim);
  if (needs_grad({t}))
    record("log_softmax", {t}, {y}, [dim, sy = SavedTensor(y)](const Grads& g) {
      return Grads{ops::log_softmax_backward(g[0], sy.unpack("log_softmax"), dim)};
    });
  return y;
}

}  // namespace shardlab
