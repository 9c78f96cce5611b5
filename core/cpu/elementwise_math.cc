// CPU kernels for element-wise math on floating tensors: exp, log, sqrt, rsqrt, pow, tanh,
// sigmoid and the activations silu and gelu (exact erf form) with their fused backward helpers.
// Each runs Eigen's SIMD array functions on blocks (see core/cpu/elementwise_loops.h).
#include <numbers>
#include <unsupported/Eigen/SpecialFunctions>

#include "core/device_kernels.h"
#include "core/cpu/elementwise_loops.h"
#include "core/ops/elementwise.h"

namespace shardlab::ops {

namespace {

// out = f(X, Y) block-wise (f assigns Y from X), for floating `a` only.
template <typename F>
Tensor unary_float(const char* op, const Tensor& a, F f) {
  check_cpu(op, {a});
  cpu::check_float_op(op, a);
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  dispatch_float(a.dtype(), op, [&]<typename T>() { cpu::unary_array_loop<T>(out, a, f); });
  return out;
}

// out = f(X, Y, Z) block-wise over the broadcast of a and b (f assigns Z), floating dtypes only.
template <typename F>
Tensor binary_float(const char* op, const Tensor& a, const Tensor& b, F f) {
  Shape shape = cpu::check_binary(op, a, b);
  cpu::check_float_op(op, a);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  dispatch_float(a.dtype(), op, [&]<typename T>() { cpu::binary_array_loop<T>(out, a, b, f); });
  return out;
}

// The arithmetic type of an Eigen array expression, for typed constants.
template <typename X>
using Scalar = typename X::Scalar;

constexpr double kInvSqrt2 = 1.0 / std::numbers::sqrt2;
constexpr double kInvSqrt2Pi = std::numbers::inv_sqrtpi / std::numbers::sqrt2;  // 1 / sqrt(2 pi)

}  // namespace

Tensor exp(const Tensor& a) {
  SL_FORWARD_TO_DEVICE(exp, a.device(), a);
  return unary_float("exp", a, [](const auto& x, auto& y) { y = x.exp(); });
}

Tensor log(const Tensor& a) {
  SL_FORWARD_TO_DEVICE(log, a.device(), a);
  return unary_float("log", a, [](const auto& x, auto& y) { y = x.log(); });
}

Tensor sqrt(const Tensor& a) {
  SL_FORWARD_TO_DEVICE(sqrt, a.device(), a);
  return unary_float("sqrt", a, [](const auto& x, auto& y) { y = x.sqrt(); });
}

Tensor rsqrt(const Tensor& a) {
  SL_FORWARD_TO_DEVICE(rsqrt, a.device(), a);
  return unary_float("rsqrt", a, [](const auto& x, auto& y) { y = x.rsqrt(); });
}

Tensor tanh(const Tensor& a) {
  SL_FORWARD_TO_DEVICE(tanh, a.device(), a);
  return unary_float("tanh", a, [](const auto& x, auto& y) { y = x.tanh(); });
}

Tensor sigmoid(const Tensor& a) {
  SL_FORWARD_TO_DEVICE(sigmoid, a.device(), a);
  return unary_float("sigmoid", a, [](const auto& x, auto& y) { y = x.logistic(); });
}

Tensor silu(const Tensor& a) {
  SL_FORWARD_TO_DEVICE(silu, a.device(), a);
  // x * sigmoid(x)
  return unary_float("silu", a, [](const auto& x, auto& y) { y = x * x.logistic(); });
}

Tensor gelu(const Tensor& a) {
  SL_FORWARD_TO_DEVICE(gelu, a.device(), a);
  // 0.5 x (1 + erf(x / sqrt 2))
  return unary_float("gelu", a, [](const auto& x, auto& y) {
    using S = Scalar<std::decay_t<decltype(x)>>;
    y = S(0.5) * x * (S(1) + (x * S(kInvSqrt2)).erf());
  });
}

Tensor silu_backward(const Tensor& grad, const Tensor& x) {
  SL_FORWARD_TO_DEVICE(silu_backward, grad.device(), grad, x);
  // d silu/dx = s (1 + x (1 - s)) with s = sigmoid(x)
  return binary_float("silu_backward", grad, x, [](const auto& g, const auto& v, auto& z) {
    using S = Scalar<std::decay_t<decltype(g)>>;
    z = v.logistic();  // z holds s until the last step
    z = g * z * (S(1) + v * (S(1) - z));
  });
}

Tensor gelu_backward(const Tensor& grad, const Tensor& x) {
  SL_FORWARD_TO_DEVICE(gelu_backward, grad.device(), grad, x);
  // d gelu/dx = Phi(x) + x phi(x): Phi(x) = 0.5 (1 + erf(x / sqrt 2)), phi(x) = exp(-x^2/2) / sqrt(2 pi)
  return binary_float("gelu_backward", grad, x, [](const auto& g, const auto& v, auto& z) {
    using S = Scalar<std::decay_t<decltype(g)>>;
    const S inv_sqrt_2pi = S(kInvSqrt2Pi);
    z = g * (S(0.5) * (S(1) + (v * S(kInvSqrt2)).erf()) + v * inv_sqrt_2pi * (S(-0.5) * v.square()).exp());
  });
}

Tensor pow(const Tensor& a, const Tensor& b) {
  SL_FORWARD_TO_DEVICE(pow, a.device(), a, b);
  return binary_float("pow", a, b, [](const auto& x, const auto& e, auto& z) { z = x.pow(e); });
}

Tensor pow_scalar(const Tensor& a, double exponent) {
  SL_FORWARD_TO_DEVICE(pow_scalar, a.device(), a, exponent);
  // Common exponents get exact, cheaper forms (x*x is also what torch computes for ^2).
  if (exponent == 1.0) return unary_float("pow_scalar", a, [](const auto& x, auto& y) { y = x; });
  if (exponent == 2.0) return unary_float("pow_scalar", a, [](const auto& x, auto& y) { y = x.square(); });
  if (exponent == 3.0) return unary_float("pow_scalar", a, [](const auto& x, auto& y) { y = x.cube(); });
  if (exponent == 0.5) return unary_float("pow_scalar", a, [](const auto& x, auto& y) { y = x.sqrt(); });
  if (exponent == -0.5) return unary_float("pow_scalar", a, [](const auto& x, auto& y) { y = x.rsqrt(); });
  if (exponent == -1.0) return unary_float("pow_scalar", a, [](const auto& x, auto& y) { y = x.inverse(); });
  return unary_float("pow_scalar", a, [exponent](const auto& x, auto& y) {
    using S = Scalar<std::decay_t<decltype(x)>>;
    y = x.pow(S(exponent));
  });
}

}  // namespace shardlab::ops
