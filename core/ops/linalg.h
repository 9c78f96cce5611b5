// Matrix products and table lookups.
#pragma once

#include "core/tensor.h"

namespace shardlab::ops {

// a (..., M, K) @ b (..., K, N) -> (..., M, N), batch dims broadcast. Any strides (pass
// transpose() views for transposed operands: no copy is made for them). bf16/f16 inputs are
// widened to f32 blocks, multiplied with f32 accumulation, and rounded once.
Tensor matmul(const Tensor& a, const Tensor& b);

// weight (V, C), ids (any shape, i32/i64) -> (..., C). An id outside [0, V) is an error naming it.
Tensor embedding(const Tensor& weight, const Tensor& ids);
// d weight (V, C) from grad (..., C): rows accumulated in a fixed order (deterministic).
Tensor embedding_backward(const Tensor& grad, const Tensor& ids, int64_t num_embeddings);

}  // namespace shardlab::ops
