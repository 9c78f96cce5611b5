// Differentiable joining: cat and stack hand each input its slab of the output gradient
// (narrow views), and split records ONE node for all its pieces whose backward cats them.
#include "autograd/functions.h"
#include "autograd/record.h"

namespace shardlab {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  Tensor out = ops::cat(tensors, dim);
  if (needs_grad(tensors)) {
    const int64_t d = wrap_dim(dim, out.dim(), "cat");
    std::vector<int64_t> sizes;
    for (const Tensor& t : tensors) sizes.push_back(t.shape()[d]);
    record("cat", tensors, {out}, [d, sizes](const Grads& g) {
      Grads grads;
      int64_t start = 0;
      for (int64_t len : sizes) {
        grads.push_back(ops::narrow(g[0], d, start, len));
        start += len;
      }
      return grads;
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  Tensor out = ops::stack(tensors, dim);
  if (needs_grad(tensors)) {
    const int64_t d = wrap_dim(dim, out.dim(), "stack");
    const size_t n = tensors.size();
    record("stack", tensors, {out}, [d, n](const Grads& g) {
      Grads grads;
      for (size_t i = 0; i < n; ++i) grads.push_back(ops::squeeze(ops::narrow(g[0], d, static_cast<int64_t>(i), 1), d));
      return grads;
    });
  }
  return out;
}

std::vector<Tensor> split(const Tensor& t, int64_t split_size, int64_t dim) {
  std::vector<Tensor> pieces = ops::split(t, split_size, dim);
  if (needs_grad({t})) {
    const int64_t d = wrap_dim(dim, t.dim(), "split");
    // The engine zero-fills the gradients of pieces that got none, so every g[i] is defined.
    record("split", {t}, pieces, [d](const Grads& g) { return Grads{ops::cat(g, d)}; });
  }
  return pieces;
}

}  // namespace shardlab
