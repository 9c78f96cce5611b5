// Differentiable reductions. Their backward rules broadcast the output gradient back over the
// reduced dims (sum, mean) or route it to the position of the first maximum (max).
#include <algorithm>

#include "autograd/functions.h"
#include "autograd/record.h"

namespace shardlab {

namespace {

// The reduced dims of a t.dim()-dim tensor, normalised and sorted (empty `dims` = all of them).
std::vector<int64_t> reduced_dims(const std::vector<int64_t>& dims, int64_t ndim, const char* op) {
  std::vector<int64_t> out;
  if (ndim == 0) return out;
  if (dims.empty())
    for (int64_t d = 0; d < ndim; ++d) out.push_back(d);
  for (int64_t d : dims) out.push_back(wrap_dim(d, ndim, op));
  std::sort(out.begin(), out.end());
  return out;
}

// The gradient of a reduction output, broadcast back to the input shape: put the reduced dims
// back as size 1 (when keepdim dropped them), then expand (a stride-0 view, no copy).
Tensor expand_back(const Tensor& g, const Shape& in_shape, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor k = g;
  if (!keepdim)
    for (int64_t d : dims) k = ops::unsqueeze(k, d);
  return ops::expand(k, in_shape);
}

}  // namespace

Tensor sum(const Tensor& t, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor out = ops::sum(t, dims, keepdim);
  if (needs_grad({t})) {
    Shape in = t.shape();
    std::vector<int64_t> rd = reduced_dims(dims, t.dim(), "sum");
    record("sum", {t}, {out}, [in, rd, keepdim](const Grads& g) { return Grads{expand_back(g[0], in, rd, keepdim)}; });
  }
  return out;
}

Tensor mean(const Tensor& t, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor out = ops::mean(t, dims, keepdim);
  if (needs_grad({t})) {
    Shape in = t.shape();
    std::vector<int64_t> rd = reduced_dims(dims, t.dim(), "mean");
    int64_t count = 1;
    for (int64_t d : rd) count *= in[d];
    record("mean", {t}, {out}, [in, rd, keepdim, count](const Grads& g) {
      // Scale the small output gradient before broadcasting it.
      return Grads{expand_back(ops::mul_scalar(g[0], 1.0 / static_cast<double>(count)), in, rd, keepdim)};
    });
  }
  return out;
}

Tensor max(const Tensor& t, int64_t dim, bool keepdim) {
  ops::MaxResult r = ops::max(t, dim, keepdim);
  if (needs_grad({t})) {
    Shape in = t.shape();
    record("max", {t}, {r.values}, [in, dim, keepdim, idx = SavedTensor(r.indices)](const Grads& g) {
      return Grads{ops::max_backward(g[0], idx.unpack("max"), in, dim, keepdim)};
    });
  }
  return r.values;
}

Tensor argmax(const Tensor& t, int64_t dim, bool keepdim) { return ops::argmax(t, dim, keepdim); }

}  // namespace shardlab
