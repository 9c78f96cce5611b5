// How a batched matmul's operands lie in memory, shared by the CPU (Eigen) and CUDA (cuBLASLt)
// kernels: per-operand batch strides against the broadcast batch, and whether an operand's rows
// (batch dims included) collapse into one strided dim so the whole product is one GEMM.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace shardlab::ops {

// The checked shapes of a @ b (at least 2-D each, one float dtype, matching inner dims, batch dims
// broadcast by numpy's rules); errors name matmul and both shapes.
struct MatmulShapes {
  int64_t M = 0, K = 0, N = 0;
  Shape a_batch, b_batch;  // each operand's own batch dims
  Shape batch;             // the broadcast batch
  Shape out;               // batch + (M, N)
};
MatmulShapes matmul_shapes(const Tensor& a, const Tensor& b);

// Batch dims of `t` (all but the last two) as strides against the broadcast batch `batch`
// (0 where t is broadcast or lacks the dim).
inline Shape batch_strides(const Tensor& t, const Shape& batch) {
  Shape out(batch.size(), 0);
  const size_t own = t.shape().size() - 2, lead = batch.size() - own;
  for (size_t d = 0; d < own; ++d) out[lead + d] = t.shape()[d] == 1 ? 0 : t.strides()[d];
  return out;
}

// When dims [0, ndim-1) of t (its batch dims and rows) collapse into one dim with a single
// stride, returns true and that stride: a (B, T, K) activation times a 2-D weight is then a
// single (B*T, K) @ (K, N) GEMM.
inline bool rows_collapse(const Tensor& t, int64_t& row_stride) {
  row_stride = t.size(-1);  // any value is valid when every row dim has size 1
  int64_t prev = -1;        // last non-trivial dim seen, walking inwards
  for (int64_t d = 0; d + 1 < t.dim(); ++d) {
    if (t.shape()[d] == 1) continue;
    if (prev >= 0 && t.strides()[prev] != t.strides()[d] * t.shape()[d]) return false;
    prev = d;
    row_stride = t.strides()[d];
  }
  return true;
}

}  // namespace shardlab::ops
