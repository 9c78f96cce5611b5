// Internal to autograd/elementwise_*.cc: the helper that sums a gradient of the broadcast output
// shape back to the shape of one operand.
#pragma once

#include "core/ops.h"

namespace shardlab {

// g has the broadcast shape of the op's output; the operand's gradient must have its own shape.
inline Tensor reduce_to(const Tensor& g, const Shape& shape) {
  return g.shape() == shape ? g : ops::sum_to(g, shape);
}

}  // namespace shardlab
