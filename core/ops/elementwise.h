// Element-wise ops with numpy broadcasting. Both operands must share dtype and device (no
// implicit promotion: a mismatch is an error naming the op, both dtypes and both shapes).
// 16-bit floats are computed in f32 and rounded once on store.
#pragma once

#include "core/tensor.h"

namespace shardlab::ops {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, double s);
Tensor mul_scalar(const Tensor& a, double s);
Tensor pow_scalar(const Tensor& a, double exponent);

Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor silu(const Tensor& a);
Tensor gelu(const Tensor& a);  // exact (erf) form, as torch's default
// d/dx of silu and gelu times grad, fused (used by their backward rules).
Tensor silu_backward(const Tensor& grad, const Tensor& x);
Tensor gelu_backward(const Tensor& grad, const Tensor& x);

// Comparisons give u8 masks (1 where true).
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
// cond (u8, broadcast) ? a : b
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// In place (bump the version of dst): dst += alpha * src (src broadcast to dst), dst *= s.
void add_(const Tensor& dst, const Tensor& src, double alpha = 1.0);
void mul_(const Tensor& dst, double s);

}  // namespace shardlab::ops
