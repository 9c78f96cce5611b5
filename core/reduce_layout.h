// How a reduction sees its input, shared by the CPU and CUDA kernels: the reduced dims as a mask,
// the tensor as a contiguous (O, R, I) block with R the reduced extent (a copy only when the
// reduced dims are not one block), and the output shape.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace shardlab::ops {

// A contiguous tensor viewed as (O, R, I) with R the reduced extent.
struct ReduceLayout {
  Tensor src;  // contiguous
  int64_t O = 1, R = 1, I = 1;
  Shape keep_shape;  // the output shape with reduced dims kept as size 1
};

// A contiguous tensor seen as (O, R, I) around one dim (softmax's lines along `dim`).
struct LineLayout {
  int64_t O = 1, R = 1, I = 1;
};
inline LineLayout line_layout(const Shape& shape, int64_t dim) {
  LineLayout L;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d < dim) L.O *= shape[d];
    else if (d == dim) L.R = shape[d];
    else L.I *= shape[d];
  }
  return L;
}

// Normalises `dims` (negative, duplicates; empty = all) into a per-dim mask; errors name `op`.
std::vector<bool> reduce_mask(const Tensor& t, const std::vector<int64_t>& dims, const char* op);
// With a contiguous input whose reduced dims (ignoring size-1 dims) form one block, the block is
// R, what precedes it O and what follows it I: no copy. Otherwise the kept dims go first and the
// reduced dims last, copied once: (O, R, 1). The copy runs on t's device.
ReduceLayout make_layout(const Tensor& t, const std::vector<bool>& mask);
// The reduction's output shape (reduced dims dropped, or kept as 1 with keepdim).
Shape output_shape(const Tensor& t, const std::vector<bool>& mask, bool keepdim);

}  // namespace shardlab::ops
