// Differentiable matmul: C = A @ B gives dA = dC @ B^T and dB = A^T @ dC (transpose views, no
// copies), summed over the batch dims each operand was broadcast along.
#include "autograd/functions.h"
#include "autograd/record.h"

namespace shardlab {

namespace {

// True when every batch dim (all but the last two) of t has size 1: t is one matrix that the
// whole batch shares (a Linear layer's weight).
bool unbatched(const Shape& shape) {
  for (size_t d = 0; d + 2 < shape.size(); ++d)
    if (shape[d] != 1) return false;
  return true;
}

Tensor reduce_to(const Tensor& g, const Shape& shape) { return g.shape() == shape ? g : ops::sum_to(g, shape); }

// dA (a_shape) from dC (batch..., M, N) and B (..., K, N).
Tensor matmul_grad_a(const Tensor& g, const Tensor& b, const Shape& a_shape) {
  return reduce_to(ops::matmul(g, ops::transpose(b, -2, -1)), a_shape);
}

// dB (b_shape) from A (..., M, K) and dC (batch..., M, N).
Tensor matmul_grad_b(const Tensor& a, const Tensor& g, const Shape& b_shape) {
  const int64_t K = a.size(-1), N = g.size(-1);
  if (unbatched(b_shape) && g.dim() > 2) {
    // B is shared by the batch: fold the batch into the GEMM's inner dim instead of forming one
    // (K, N) product per batch entry and summing them: dB = A_flat^T (K, R) @ dC_flat (R, N).
    const int64_t rows = g.numel() / N;
    Tensor a_flat = ops::reshape(a, {rows, K}), g_flat = ops::reshape(g, {rows, N});
    return ops::reshape(ops::matmul(ops::transpose(a_flat, 0, 1), g_flat), b_shape);
  }
  return reduce_to(ops::matmul(ops::transpose(a, -2, -1), g), b_shape);
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  Tensor out = ops::matmul(a, b);
  if (needs_grad({a, b})) {
    const bool need_a = a.requires_grad(), need_b = b.requires_grad();
    // Each gradient needs only the other operand.
    record("matmul", {a, b}, {out},
           [sa = SavedTensor(need_b ? a : Tensor()), sb = SavedTensor(need_a ? b : Tensor()), a_shape = a.shape(),
            b_shape = b.shape(), need_a, need_b](const Grads& g) {
             Grads grads(2);
             if (need_a) grads[0] = matmul_grad_a(g[0], sb.unpack("matmul"), a_shape);
             if (need_b) grads[1] = matmul_grad_b(sa.unpack("matmul"), g[0], b_shape);
             return grads;
           });
  }
  return out;
}

}  // namespace shardlab
