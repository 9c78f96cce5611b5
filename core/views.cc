// View ops: new (shape, strides, offset) over the same storage. No data moves here.
#include <algorithm>
#include <numeric>

#include "core/ops/views.h"

namespace shardlab::ops {

namespace {
Tensor make_view(const Tensor& t, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = t.dtype();
  return Tensor(std::move(impl));
}

// Resolves a single -1 in `shape` against numel.
Shape infer_shape(const Shape& shape, int64_t numel, const char* op, const Shape& from) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      SL_CHECK(infer < 0, op, ": more than one -1 in shape ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      SL_CHECK(out[i] >= 0, op, ": negative size in shape ", shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    SL_CHECK(known != 0 && numel % known == 0, op, ": shape ", shape_str(shape), " is invalid for a tensor of shape ",
             shape_str(from));
    out[infer] = numel / known;
  }
  SL_CHECK(shape_numel(out) == numel, op, ": shape ", shape_str(shape), " is invalid for a tensor of shape ",
           shape_str(from), " (", numel, " elements)");
  return out;
}

// Strides for viewing (shape, strides) as new_shape, if possible (torch's computeStride).
bool view_strides(const Shape& shape, const Shape& strides, const Shape& new_shape, Shape& out) {
  out.assign(new_shape.size(), 0);
  if (shape_numel(shape) == 0) {
    out = contiguous_strides(new_shape);
    return true;
  }
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}
}  // namespace

Tensor alias(const Tensor& t) { return make_view(t, t.shape(), t.strides(), t.offset()); }

bool is_view_compatible(const Tensor& t, const Shape& shape) {
  Shape strides;
  return view_strides(t.shape(), t.strides(), infer_shape(shape, t.numel(), "view", t.shape()), strides);
}

Tensor view(const Tensor& t, const Shape& shape) {
  Shape new_shape = infer_shape(shape, t.numel(), "view", t.shape());
  Shape strides;
  SL_CHECK(view_strides(t.shape(), t.strides(), new_shape, strides), "view: a tensor of shape ", shape_str(t.shape()),
           " with strides ", shape_str(t.strides()), " cannot be viewed as ", shape_str(new_shape),
           "; use reshape (which copies)");
  return make_view(t, new_shape, strides, t.offset());
}

Tensor reshape(const Tensor& t, const Shape& shape) {
  Shape new_shape = infer_shape(shape, t.numel(), "reshape", t.shape());
  Shape strides;
  if (view_strides(t.shape(), t.strides(), new_shape, strides)) return make_view(t, new_shape, strides, t.offset());
  return view(clone(t), new_shape);
}

Tensor transpose(const Tensor& t, int64_t dim0, int64_t dim1) {
  int64_t a = wrap_dim(dim0, t.dim(), "transpose"), b = wrap_dim(dim1, t.dim(), "transpose");
  Shape shape = t.shape(), strides = t.strides();
  if (t.dim() == 0) return alias(t);
  std::swap(shape[a], shape[b]);
  std::swap(strides[a], strides[b]);
  return make_view(t, shape, strides, t.offset());
}

Tensor permute(const Tensor& t, const std::vector<int64_t>& dims) {
  SL_CHECK(static_cast<int64_t>(dims.size()) == t.dim(), "permute: ", dims.size(), " dims given for a tensor of shape ",
           shape_str(t.shape()));
  Shape shape(dims.size()), strides(dims.size());
  std::vector<bool> used(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], t.dim(), "permute");
    SL_CHECK(!used[d], "permute: dim ", dims[i], " repeats");
    used[d] = true;
    shape[i] = t.shape()[d];
    strides[i] = t.strides()[d];
  }
  return make_view(t, shape, strides, t.offset());
}

Tensor narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length) {
  int64_t d = wrap_dim(dim, t.dim(), "narrow");
  SL_CHECK(start >= 0 && length >= 0 && start + length <= t.shape()[d], "narrow: [", start, ", ", start + length,
           ") is out of range for dim ", d, " of a tensor of shape ", shape_str(t.shape()));
  Shape shape = t.shape();
  shape[d] = length;
  return make_view(t, shape, t.strides(), t.offset() + start * t.strides()[d]);
}

Tensor slice(const Tensor& t, int64_t dim, int64_t start, int64_t end, int64_t step) {
  int64_t d = wrap_dim(dim, t.dim(), "slice");
  SL_CHECK(step > 0, "slice: step must be positive, got ", step);
  const int64_t n = t.shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape shape = t.shape(), strides = t.strides();
  shape[d] = (end - start + step - 1) / step;
  strides[d] *= step;
  return make_view(t, shape, strides, t.offset() + start * t.strides()[d]);
}

Tensor expand(const Tensor& t, const Shape& shape) {
  SL_CHECK(static_cast<int64_t>(shape.size()) >= t.dim(), "expand: cannot expand shape ", shape_str(t.shape()),
           " to fewer dims ", shape_str(shape));
  const int64_t lead = static_cast<int64_t>(shape.size()) - t.dim();
  Shape out_shape(shape.size()), strides(shape.size());
  for (int64_t i = 0; i < static_cast<int64_t>(shape.size()); ++i) {
    if (i < lead) {
      SL_CHECK(shape[i] >= 0, "expand: new leading dim ", i, " of ", shape_str(shape), " cannot be -1");
      out_shape[i] = shape[i];
      strides[i] = 0;
      continue;
    }
    int64_t have = t.shape()[i - lead];
    int64_t want = shape[i] == -1 ? have : shape[i];
    SL_CHECK(have == want || have == 1, "expand: shape ", shape_str(t.shape()), " cannot be expanded to ",
             shape_str(shape));
    out_shape[i] = want;
    strides[i] = have == want ? t.strides()[i - lead] : 0;
  }
  return make_view(t, out_shape, strides, t.offset());
}

Tensor unsqueeze(const Tensor& t, int64_t dim) {
  int64_t d = wrap_dim(dim, t.dim() + 1, "unsqueeze");
  Shape shape = t.shape(), strides = t.strides();
  int64_t stride = d < t.dim() ? shape[d] * strides[d] : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, stride);
  return make_view(t, shape, strides, t.offset());
}

Tensor squeeze(const Tensor& t, int64_t dim) {
  if (t.dim() == 0) return alias(t);
  int64_t d = wrap_dim(dim, t.dim(), "squeeze");
  if (t.shape()[d] != 1) return alias(t);
  Shape shape = t.shape(), strides = t.strides();
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return make_view(t, shape, strides, t.offset());
}

Tensor squeeze(const Tensor& t) {
  Shape shape, strides;
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.shape()[d] != 1) {
      shape.push_back(t.shape()[d]);
      strides.push_back(t.strides()[d]);
    }
  return make_view(t, shape, strides, t.offset());
}

std::vector<Tensor> split(const Tensor& t, int64_t split_size, int64_t dim) {
  int64_t d = wrap_dim(dim, t.dim(), "split");
  SL_CHECK(split_size > 0, "split: split_size must be positive, got ", split_size);
  std::vector<int64_t> sizes;
  for (int64_t start = 0; start < t.shape()[d]; start += split_size)
    sizes.push_back(std::min(split_size, t.shape()[d] - start));
  return split_sizes(t, sizes, d);
}

std::vector<Tensor> split_sizes(const Tensor& t, const std::vector<int64_t>& sizes, int64_t dim) {
  int64_t d = wrap_dim(dim, t.dim(), "split");
  int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  SL_CHECK(total == t.shape()[d], "split: sizes sum to ", total, " but dim ", d, " of shape ", shape_str(t.shape()),
           " has ", t.shape()[d]);
  std::vector<Tensor> out;
  int64_t start = 0;
  for (int64_t s : sizes) {
    out.push_back(narrow(t, d, start, s));
    start += s;
  }
  return out;
}

}  // namespace shardlab::ops
