// Differentiable rotary embedding: the rotation is linear and orthogonal in x, so its backward
// is the rotation by -angle and needs only the positions and the config, not x.
#include "autograd/functions.h"
#include "autograd/record.h"

namespace shardlab {

Tensor rope(const Tensor& x, const Tensor& positions, const RopeConfig& config) {
  Tensor y = ops::rope_fwd(x, positions, config);
  if (needs_grad({x}))
    record("rope", {x}, {y}, [pos = SavedTensor(positions), config](const Grads& g) {
      return Grads{ops::rope_bwd(g[0], pos.unpack("rope"), config)};
    });
  return y;
}

}  // namespace shardlab
