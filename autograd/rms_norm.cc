// Differentiable RMSNorm: the fused forward kernel, with a backward that needs only x, weight and
// the per-row rstd saved by the forward (not the normalised activations).
#include "autograd/functions.h"
#include "autograd/record.h"

namespace shardlab {

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  ops::RmsNormOut out = ops::rms_norm_fwd(x, weight, eps);
  if (needs_grad({x, weight}))
    record("rms_norm", {x, weight}, {out.y},
           [sx = SavedTensor(x), sw = SavedTensor(weight), rstd = SavedTensor(out.rstd)](const Grads& g) {
             ops::RmsNormGrads d =
                 ops::rms_norm_bwd(g[0], sx.unpack("rms_norm"), sw.unpack("rms_norm"), rstd.unpack("rms_norm"));
             return Grads{d.dx, d.dweight};
           });
  return out.y;
}

}  // namespace shardlab
