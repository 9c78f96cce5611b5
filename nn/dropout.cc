// Dropout: keep each element with probability 1 - p and scale kept ones by 1 / (1 - p).
#include "nn/dropout.h"

#include "autograd/functions.h"
#include "core/random.h"

namespace shardlab::nn {

Dropout::Dropout(double p, uint64_t seed) : UnaryModule("Dropout"), p_(p), seed_(seed) {
  SL_CHECK(p >= 0.0 && p < 1.0, "Dropout: p must be in [0, 1), got ", p);
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || p_ == 0.0) return x;
  // A fresh stream per call: mix the call index into the seed.
  const auto words = philox4x32(seed_, calls_++);
  const uint64_t stream = words[0] | (static_cast<uint64_t>(words[1]) << 32);
  // The mask is drawn on the host (counter-based, so identical on every device) and moved to x's
  // device; a device-side Philox kernel would save the copy.
  Tensor keep = Tensor::rand(x.shape(), stream, x.dtype());
  Tensor mask = ops::to_dtype(ops::ge(keep, Tensor::scalar(p_, x.dtype())), x.dtype()).to(x.device());
  return mul(x, mask) * (1.0 / (1.0 - p_));
}

}  // namespace shardlab::nn
