// Differentiable element-wise math (exp, log, sqrt, rsqrt, pow, tanh, sigmoid, silu, gelu),
// where(cond, a, b), and the comparisons, which only forward to ops (they have no gradient).
// Rules save the output where the derivative is cheapest in terms of it (exp, sqrt, tanh, sigmoid).
#include "autograd/elementwise_common.h"
#include "autograd/functions.h"
#include "autograd/record.h"

namespace shardlab {

namespace {
// Records a one-input op whose gradient is g * d(saved), d given by `deriv`.
template <typename Deriv>
Tensor unary_rule(const char* op, const Tensor& a, Tensor out, const Tensor& saved, Deriv deriv) {
  if (needs_grad({a}))
    record(op, {a}, {out}, [op, s = SavedTensor(saved), deriv](const Grads& g) {
      return Grads{deriv(g[0], s.unpack(op))};
    });
  return out;
}
}  // namespace

Tensor exp(const Tensor& a) {
  Tensor out = ops::exp(a);
  return unary_rule("exp", a, out, out, [](const Tensor& g, const Tensor& y) { return ops::mul(g, y); });
}

Tensor log(const Tensor& a) {
  return unary_rule("log", a, ops::log(a), a, [](const Tensor& g, const Tensor& x) { return ops::div(g, x); });
}

Tensor sqrt(const Tensor& a) {
  // d sqrt(x) = 1 / (2 sqrt(x))
  Tensor out = ops::sqrt(a);
  return unary_rule("sqrt", a, out, out,
                    [](const Tensor& g, const Tensor& y) { return ops::mul_scalar(ops::div(g, y), 0.5); });
}

Tensor rsqrt(const Tensor& a) {
  // d x^(-1/2) = -1/2 x^(-3/2) = -1/2 y^3
  Tensor out = ops::rsqrt(a);
  return unary_rule("rsqrt", a, out, out, [](const Tensor& g, const Tensor& y) {
    return ops::mul(g, ops::mul_scalar(ops::pow_scalar(y, 3.0), -0.5));
  });
}

Tensor pow_scalar(const Tensor& a, double exponent) {
  return unary_rule("pow_scalar", a, ops::pow_scalar(a, exponent), a, [exponent](const Tensor& g, const Tensor& x) {
    if (exponent == 0.0) return ops::mul_scalar(g, 0.0);
    return ops::mul(g, ops::mul_scalar(ops::pow_scalar(x, exponent - 1.0), exponent));
  });
}

Tensor tanh(const Tensor& a) {
  // d tanh = 1 - y^2
  Tensor out = ops::tanh(a);
  return unary_rule("tanh", a, out, out, [](const Tensor& g, const Tensor& y) {
    return ops::mul(g, ops::add_scalar(ops::neg(ops::mul(y, y)), 1.0));
  });
}

Tensor sigmoid(const Tensor& a) {
  // d sigmoid = y (1 - y)
  Tensor out = ops::sigmoid(a);
  return unary_rule("sigmoid", a, out, out, [](const Tensor& g, const Tensor& y) {
    return ops::mul(ops::mul(g, y), ops::add_scalar(ops::neg(y), 1.0));
  });
}

Tensor silu(const Tensor& a) {
  return unary_rule("silu", a, ops::silu(a), a, [](const Tensor& g, const Tensor& x) { return ops::silu_backward(g, x); });
}

Tensor gelu(const Tensor& a) {
  return unary_rule("gelu", a, ops::gelu(a), a, [](const Tensor& g, const Tensor& x) { return ops::gelu_backward(g, x); });
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = ops::pow(a, b);
  if (needs_grad({a, b})) {
    const Shape sa = a.shape(), sb = b.shape();
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    // d a^b / da = b a^(b-1), d a^b / db = a^b log(a)
    record("pow", {a, b}, {out},
           [=, a_ = SavedTensor(a), b_ = ga ? SavedTensor(b) : SavedTensor(), out_ = gb ? SavedTensor(out) : SavedTensor()](
               const Grads& g) {
             Tensor x = a_.unpack("pow");
             Tensor da, db;
             if (ga) {
               Tensor e = b_.unpack("pow");
               da = reduce_to(ops::mul(g[0], ops::mul(e, ops::pow(x, ops::add_scalar(e, -1.0)))), sa);
             }
             if (gb) db = reduce_to(ops::mul(g[0], ops::mul(out_.unpack("pow"), ops::log(x))), sb);
             return Grads{da, db};
           });
  }
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor out = ops::where(cond, a, b);
  if (needs_grad({a, b})) {
    const Shape sa = a.shape(), sb = b.shape();
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    // The gradient goes to a where cond holds and to b elsewhere; cond gets none.
    record("where", {cond, a, b}, {out}, [=, c_ = SavedTensor(cond)](const Grads& g) {
      Tensor c = c_.unpack("where");
      Tensor zero = Tensor::zeros({}, g[0].dtype(), g[0].device());
      return Grads{Tensor(), ga ? reduce_to(ops::where(c, g[0], zero), sa) : Tensor(),
                   gb ? reduce_to(ops::where(c, zero, g[0]), sb) : Tensor()};
    });
  }
  return out;
}

Tensor eq(const Tensor& a, const Tensor& b) { return ops::eq(a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return ops::ne(a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return ops::lt(a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return ops::le(a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return ops::gt(a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return ops::ge(a, b); }

}  // namespace shardlab
