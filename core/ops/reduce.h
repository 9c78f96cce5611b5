// Reductions over dims. An empty `dims` list means every dim. Floats accumulate in at least f32
// (f32 sums accumulate in f64 for accuracy); integers accumulate in i64.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace shardlab::ops {

Tensor sum(const Tensor& t, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& t, const std::vector<int64_t>& dims = {}, bool keepdim = false);
struct MaxResult {
  Tensor values;
  Tensor indices;  // i64; the first maximum wins ties
};
MaxResult max(const Tensor& t, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& t, int64_t dim, bool keepdim = false);
// The gradient of max: zeros of `input_shape` with grad[j] written at indices[j] along `dim`.
// grad and indices have the shape max returned (with or without the reduced dim, per keepdim).
Tensor max_backward(const Tensor& grad, const Tensor& indices, const Shape& input_shape, int64_t dim, bool keepdim);
// Sums a broadcast result back down to `shape` (the inverse of broadcasting, for gradients).
Tensor sum_to(const Tensor& t, const Shape& shape);

// Softmax family along `dim`.
Tensor softmax(const Tensor& t, int64_t dim);
Tensor log_softmax(const Tensor& t, int64_t dim);
// Given y = softmax(x) (or log_softmax(x)) and dy, returns dx.
Tensor softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim);
Tensor log_softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim);

}  // namespace shardlab::ops
