// CPU kernels for element-wise arithmetic over every numeric dtype: add, sub, mul, div, neg, the
// tensor-scalar forms and the in-place add_/mul_ that optimizers and gradient accumulation use.
#include <cmath>

#include "core/device_kernels.h"
#include "core/cpu/elementwise_loops.h"
#include "core/ops/elementwise.h"

namespace shardlab::ops {

namespace {

template <typename T>
using A = acc_t<T>;

// A double scalar as the arithmetic type of T. Integer tensors only take integral scalars: a
// fractional one would be silently truncated, so it is an error naming the op.
template <typename T>
A<T> scalar_as(const char* op, double s, const Tensor& t) {
  if constexpr (std::is_integral_v<T>) {
    SL_CHECK(std::trunc(s) == s, op, ": scalar ", s, " is not an integer but the tensor of shape ",
             shape_str(t.shape()), " has integer dtype ", dtype_name(t.dtype()));
  }
  return static_cast<A<T>>(s);
}

// out = f(a, b) over the broadcast shape for every numeric dtype; f works on acc_t<T> values.
template <typename F>
Tensor binary_numeric(const char* op, const Tensor& a, const Tensor& b, F f) {
  Shape shape = cpu::check_binary(op, a, b);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  dispatch_numeric(a.dtype(), op, [&]<typename T>() {
    cpu::binary_loop<T, T>(out, a, b, [&](T x, T y) { return static_cast<T>(f(static_cast<A<T>>(x), static_cast<A<T>>(y))); });
  });
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  SL_FORWARD_TO_DEVICE(add, a.device(), a, b);
  return binary_numeric("add", a, b, [](auto x, auto y) { return x + y; });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  SL_FORWARD_TO_DEVICE(sub, a.device(), a, b);
  return binary_numeric("sub", a, b, [](auto x, auto y) { return x - y; });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  SL_FORWARD_TO_DEVICE(mul, a.device(), a, b);
  return binary_numeric("mul", a, b, [](auto x, auto y) { return x * y; });
}

Tensor div(const Tensor& a, const Tensor& b) {
  SL_FORWARD_TO_DEVICE(div, a.device(), a, b);
  // Integer division would truncate (and trap on zero); without promotion to float there is no
  // answer that matches torch's true division, so integers are rejected.
  cpu::check_binary("div", a, b);
  cpu::check_float_op("div", a);
  return binary_numeric("div", a, b, [](auto x, auto y) { return x / y; });
}

Tensor neg(const Tensor& a) {
  SL_FORWARD_TO_DEVICE(neg, a.device(), a);
  check_cpu("neg", {a});
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  dispatch_numeric(a.dtype(), "neg", [&]<typename T>() {
    cpu::unary_loop<T, T>(out, a, [](T x) { return static_cast<T>(-static_cast<A<T>>(x)); });
  });
  return out;
}

Tensor add_scalar(const Tensor& a, double s) {
  SL_FORWARD_TO_DEVICE(add_scalar, a.device(), a, s);
  check_cpu("add_scalar", {a});
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  dispatch_numeric(a.dtype(), "add_scalar", [&]<typename T>() {
    const A<T> v = scalar_as<T>("add_scalar", s, a);
    cpu::unary_loop<T, T>(out, a, [v](T x) { return static_cast<T>(static_cast<A<T>>(x) + v); });
  });
  return out;
}

Tensor mul_scalar(const Tensor& a, double s) {
  SL_FORWARD_TO_DEVICE(mul_scalar, a.device(), a, s);
  check_cpu("mul_scalar", {a});
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  dispatch_numeric(a.dtype(), "mul_scalar", [&]<typename T>() {
    const A<T> v = scalar_as<T>("mul_scalar", s, a);
    cpu::unary_loop<T, T>(out, a, [v](T x) { return static_cast<T>(static_cast<A<T>>(x) * v); });
  });
  return out;
}

void add_(const Tensor& dst, const Tensor& src, double alpha) {
  SL_FORWARD_TO_DEVICE(add_, dst.device(), dst, src, alpha);
  check_cpu("add_", {dst, src});
  check_same_device("add_", dst, src);
  check_same_dtype("add_", dst, src);
  Shape shape = broadcast_shapes(dst.shape(), src.shape(), "add_");
  SL_CHECK(shape == dst.shape(), "add_: source of shape ", shape_str(src.shape()),
           " cannot be broadcast to destination shape ", shape_str(dst.shape()));
  dispatch_numeric(dst.dtype(), "add_", [&]<typename T>() {
    const A<T> al = scalar_as<T>("add_", alpha, dst);
    dst.bump_version();  // after every check: a failed call leaves dst and its version untouched
    // dst is both the output and the first operand; same offsets, so element-wise aliasing is safe.
    if (alpha == 1.0)
      cpu::binary_loop<T, T>(dst, dst, src, [](T x, T y) { return static_cast<T>(static_cast<A<T>>(x) + static_cast<A<T>>(y)); });
    else
      cpu::binary_loop<T, T>(dst, dst, src,
                             [al](T x, T y) { return static_cast<T>(static_cast<A<T>>(x) + al * static_cast<A<T>>(y)); });
  });
}

void mul_(const Tensor& dst, double s) {
  SL_FORWARD_TO_DEVICE(mul_, dst.device(), dst, s);
  check_cpu("mul_", {dst});
  dispatch_numeric(dst.dtype(), "mul_", [&]<typename T>() {
    const A<T> v = scalar_as<T>("mul_", s, dst);
    dst.bump_version();
    cpu::unary_loop<T, T>(dst, dst, [v](T x) { return static_cast<T>(static_cast<A<T>>(x) * v); });
  });
}

}  // namespace shardlab::ops
