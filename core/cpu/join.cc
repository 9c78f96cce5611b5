// CPU joining: cat copies each input into its slab of the output; stack is cat of unsqueezed
// inputs. (split and split_sizes are narrow views, in core/views.cc.)
#include <omp.h>

#include <cstring>

#include "core/checks.h"
#include "core/cpu/loops.h"
#include "core/ops/views.h"

namespace shardlab::ops {

namespace {

// Every input must match tensors[0] in dtype, device and rank, and in every size but `dim`
// (`dim` < 0: in every size, as stack requires).
void check_joinable(const char* op, const std::vector<Tensor>& tensors, int64_t dim) {
  SL_CHECK(!tensors.empty(), op, ": needs at least one tensor");
  const Tensor& first = tensors[0];
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    SL_CHECK(t.defined(), op, ": tensor ", i, " is undefined");
    check_same_device(op, first, t);
    check_same_dtype(op, first, t);
    bool same = t.dim() == first.dim();
    for (int64_t d = 0; same && d < t.dim(); ++d) same = d == dim || t.shape()[d] == first.shape()[d];
    if (same) continue;
    if (dim < 0)
      SL_FAIL(op, ": every tensor must have the same shape, but tensor 0 has shape ", shape_str(first.shape()),
              " and tensor ", i, " has shape ", shape_str(t.shape()));
    SL_FAIL(op, ": sizes must match except in dim ", dim, ", but tensor 0 has shape ", shape_str(first.shape()),
            " and tensor ", i, " has shape ", shape_str(t.shape()));
  }
}

}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  SL_CHECK(!tensors.empty() && tensors[0].defined(), "cat: needs at least one defined tensor");
  const Tensor& first = tensors[0];
  SL_CHECK(first.dim() > 0, "cat: cannot concatenate zero-dim tensors (shape ", shape_str(first.shape()), ")");
  const int64_t d = wrap_dim(dim, first.dim(), "cat");
  check_joinable("cat", tensors, d);

  Shape shape = first.shape();
  shape[d] = 0;
  for (const Tensor& t : tensors) shape[d] += t.shape()[d];
  Tensor out = Tensor::empty(shape, first.dtype(), first.device());
  if (out.numel() == 0) return out;
  if (!out.device().is_cpu()) {  // a device: one copy_ kernel per input into its slice of out
    int64_t at = 0;
    for (const Tensor& t : tensors) {
      if (t.shape()[d] > 0) copy_(narrow(out, d, at, t.shape()[d]), t);
      at += t.shape()[d];
    }
    return out;
  }

  // out viewed as (O, shape[d] * inner): input i fills columns [start, start + size_i * inner).
  int64_t O = 1, inner = 1;
  for (int64_t k = 0; k < d; ++k) O *= shape[k];
  for (int64_t k = d + 1; k < static_cast<int64_t>(shape.size()); ++k) inner *= shape[k];
  const int64_t esize = dtype_size(first.dtype());
  const int64_t out_row = shape[d] * inner;
  char* dst = static_cast<char*>(out.raw_data());
  int64_t start = 0;
  for (const Tensor& t : tensors) {
    const int64_t len = t.shape()[d];
    if (len > 0 && t.is_contiguous()) {
      // Contiguous input: one memcpy per outer row.
      const char* src = static_cast<const char*>(t.raw_data());
      const int64_t row = len * inner;
#pragma omp parallel for schedule(static) if (O * row >= cpu::kParallelGrain && O > 1 && !omp_in_parallel())
      for (int64_t o = 0; o < O; ++o)
        std::memcpy(dst + (o * out_row + start * inner) * esize, src + o * row * esize, static_cast<size_t>(row * esize));
    } else if (len > 0) {
      copy_(narrow(out, d, start, len), t);  // strided input: the generic copy loop
    }
    start += len;
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  check_joinable("stack", tensors, -1);
  const int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  parts.reserve(tensors.size());
  for (const Tensor& t : tensors) parts.push_back(unsqueeze(t, d));
  return cat(parts, d);
}

}  // namespace shardlab::ops
