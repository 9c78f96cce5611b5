// Views and layout: ops that reinterpret (shape, strides, offset) over the same storage, plus
// the copies that make layouts concrete (contiguous, clone, to_dtype, copy_, fill_), and joining.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace shardlab::ops {

// A new TensorImpl over the same storage and layout, without autograd state (shares versions).
Tensor alias(const Tensor& t);
// View with a new shape (one dim may be -1); errors if the strides do not allow a view.
Tensor view(const Tensor& t, const Shape& shape);
// A view when the layout allows it, else a contiguous copy.
Tensor reshape(const Tensor& t, const Shape& shape);
Tensor transpose(const Tensor& t, int64_t dim0, int64_t dim1);
Tensor permute(const Tensor& t, const std::vector<int64_t>& dims);
Tensor narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length);
// Python-style t[start:end:step] along dim (step > 0; start/end may be negative, end is clamped).
Tensor slice(const Tensor& t, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
// Broadcasts size-1 dims (stride 0) and prepends new dims; -1 keeps a size.
Tensor expand(const Tensor& t, const Shape& shape);
Tensor unsqueeze(const Tensor& t, int64_t dim);
Tensor squeeze(const Tensor& t, int64_t dim);
Tensor squeeze(const Tensor& t);  // every size-1 dim
bool is_view_compatible(const Tensor& t, const Shape& shape);

Tensor contiguous(const Tensor& t);  // t itself when already contiguous
Tensor clone(const Tensor& t);       // always a fresh contiguous copy
Tensor to_dtype(const Tensor& t, DType dtype);  // t itself when dtype matches
// dst <- src (src broadcast to dst's shape, converted to dst's dtype); bumps dst's version.
void copy_(const Tensor& dst, const Tensor& src);
void fill_(const Tensor& dst, double value);

// Concatenates along dim; all inputs share dtype, device and every other size.
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
// Views of consecutive chunks of `split_size` (the last may be smaller).
std::vector<Tensor> split(const Tensor& t, int64_t split_size, int64_t dim);
std::vector<Tensor> split_sizes(const Tensor& t, const std::vector<int64_t>& sizes, int64_t dim);

}  // namespace shardlab::ops
