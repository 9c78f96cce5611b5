// The reduction layout shared by the CPU and CUDA kernels (see core/reduce_layout.h).
#include "core/reduce_layout.h"

#include "core/error.h"
#include "core/ops/views.h"

namespace shardlab::ops {

std::vector<bool> reduce_mask(const Tensor& t, const std::vector<int64_t>& dims, const char* op) {
  const int64_t nd = t.dim();
  std::vector<bool> mask(static_cast<size_t>(nd), dims.empty());
  for (int64_t d : dims) {
    if (nd == 0) {  // a scalar reduces over "dim 0" or "dim -1" as a no-op, like torch
      SL_CHECK(d == 0 || d == -1, op, ": dim ", d, " is out of range for a tensor of shape ", shape_str(t.shape()));
      continue;
    }
    SL_CHECK(d >= -nd && d < nd, op, ": dim ", d, " is out of range for a tensor of shape ", shape_str(t.shape()));
    const int64_t w = d < 0 ? d + nd : d;
    SL_CHECK(!mask[w], op, ": dim ", d, " appears more than once in the reduced dims of a tensor of shape ",
             shape_str(t.shape()));
    mask[w] = true;
  }
  return mask;
}

ReduceLayout make_layout(const Tensor& t, const std::vector<bool>& mask) {
  ReduceLayout L;
  const int64_t nd = t.dim();
  for (int64_t d = 0; d < nd; ++d) L.keep_shape.push_back(mask[d] ? 1 : t.shape()[d]);
  if (t.is_contiguous()) {
    int64_t first = -1, last = -1;
    bool block = true;
    for (int64_t d = 0; d < nd; ++d) {
      if (!mask[d] || t.shape()[d] == 1) continue;
      if (first < 0) first = d;
      else
        for (int64_t k = last + 1; k < d; ++k) block = block && t.shape()[k] == 1;
      last = d;
    }
    if (block) {
      L.src = t;
      for (int64_t d = 0; d < nd; ++d) {
        if (first >= 0 && d >= first && d <= last) L.R *= t.shape()[d];
        else if (first < 0 || d < first) L.O *= t.shape()[d];
        else L.I *= t.shape()[d];
      }
      return L;
    }
  }
  std::vector<int64_t> order;
  for (int64_t d = 0; d < nd; ++d)
    if (!mask[d]) { order.push_back(d); L.O *= t.shape()[d]; }
  for (int64_t d = 0; d < nd; ++d)
    if (mask[d]) { order.push_back(d); L.R *= t.shape()[d]; }
  L.src = contiguous(permute(t, order));
  return L;
}

Shape output_shape(const Tensor& t, const std::vector<bool>& mask, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (!mask[d]) out.push_back(t.shape()[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

}  // namespace shardlab::ops
