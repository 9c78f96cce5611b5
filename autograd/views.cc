// Differentiable views and layout ops. Their backward rules move the gradient back into the
// input's shape: reshape back, transpose back, scatter into zeros, or sum over broadcast dims.
#include "autograd/functions.h"
#include "autograd/record.h"

namespace shardlab {

namespace {
// Records a single-input op whose backward depends only on the input's shape and dtype.
Tensor unary_layout(const char* op, const Tensor& t, Tensor out, std::function<Tensor(const Tensor&)> back) {
  if (needs_grad({t}))
    record(op, {t}, {out}, [back = std::move(back)](const Grads& g) { return Grads{back(g[0])}; });
  return out;
}
}  // namespace

Tensor view(const Tensor& t, const Shape& shape) {
  Shape in = t.shape();
  return unary_layout("view", t, ops::view(t, shape), [in](const Tensor& g) { return ops::reshape(g, in); });
}

Tensor reshape(const Tensor& t, const Shape& shape) {
  Shape in = t.shape();
  return unary_layout("reshape", t, ops::reshape(t, shape), [in](const Tensor& g) { return ops::reshape(g, in); });
}

Tensor transpose(const Tensor& t, int64_t dim0, int64_t dim1) {
  return unary_layout("transpose", t, ops::transpose(t, dim0, dim1),
                      [dim0, dim1](const Tensor& g) { return ops::transpose(g, dim0, dim1); });
}

Tensor permute(const Tensor& t, const std::vector<int64_t>& dims) {
  Tensor out = ops::permute(t, dims);
  std::vector<int64_t> inverse(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) inverse[wrap_dim(dims[i], t.dim(), "permute")] = static_cast<int64_t>(i);
  return unary_layout("permute", t, out, [inverse](const Tensor& g) { return ops::permute(g, inverse); });
}

namespace {
// Gradient of a view that selects part of the input: zeros with the grad written into the part.
Tensor scatter_into_zeros(const Tensor& g, const Shape& in_shape, DType dtype,
                          const std::function<Tensor(const Tensor&)>& select) {
  Tensor full = Tensor::zeros(in_shape, dtype, g.device());
  ops::copy_(select(full), g);
  return full;
}
}  // namespace

Tensor narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length) {
  Shape in = t.shape();
  DType dt = t.dtype();
  return unary_layout("narrow", t, ops::narrow(t, dim, start, length), [=](const Tensor& g) {
    return scatter_into_zeros(g, in, dt, [&](const Tensor& f) { return ops::narrow(f, dim, start, length); });
  });
}

Tensor slice(const Tensor& t, int64_t dim, int64_t start, int64_t end, int64_t step) {
  Shape in = t.shape();
  DType dt = t.dtype();
  return unary_layout("slice", t, ops::slice(t, dim, start, end, step), [=](const Tensor& g) {
    return scatter_into_zeros(g, in, dt, [&](const Tensor& f) { return ops::slice(f, dim, start, end, step); });
  });
}

Tensor expand(const Tensor& t, const Shape& shape) {
  Shape in = t.shape();
  return unary_layout("expand", t, ops::expand(t, shape), [in](const Tensor& g) { return ops::sum_to(g, in); });
}

Tensor unsqueeze(const Tensor& t, int64_t dim) {
  Shape in = t.shape();
  return unary_layout("unsqueeze", t, ops::unsqueeze(t, dim), [in](const Tensor& g) { return ops::reshape(g, in); });
}

Tensor squeeze(const Tensor& t, int64_t dim) {
  Shape in = t.shape();
  return unary_layout("squeeze", t, ops::squeeze(t, dim), [in](const Tensor& g) { return ops::reshape(g, in); });
}

Tensor contiguous(const Tensor& t) {
  Tensor out = t.is_contiguous() ? ops::alias(t) : ops::clone(t);
  return unary_layout("contiguous", t, out, [](const Tensor& g) { return g; });
}

Tensor clone(const Tensor& t) {
  return unary_layout("clone", t, ops::clone(t), [](const Tensor& g) { return g; });
}

Tensor to_dtype(const Tensor& t, DType dtype) {
  DType in = t.dtype();
  Tensor out = dtype == in ? ops::alias(t) : ops::to_dtype(t, dtype);
  if (!is_floating(dtype)) return out;  // integer results carry no gradient
  return unary_layout("to_dtype", t, out, [in](const Tensor& g) { return ops::to_dtype(g, in); });
}

}  // namespace shardlab
