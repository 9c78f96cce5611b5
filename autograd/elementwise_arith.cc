// Differentiable element-wise arithmetic (add, sub, mul, div, neg, the scalar forms and the
// operators). Gradients of broadcast operands are summed back to the operand's shape.
#include "autograd/elementwise_common.h"
#include "autograd/functions.h"
#include "autograd/record.h"

namespace shardlab {

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = ops::add(a, b);
  if (needs_grad({a, b})) {
    const Shape sa = a.shape(), sb = b.shape();
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    record("add", {a, b}, {out}, [=](const Grads& g) {
      return Grads{ga ? reduce_to(g[0], sa) : Tensor(), gb ? reduce_to(g[0], sb) : Tensor()};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = ops::sub(a, b);
  if (needs_grad({a, b})) {
    const Shape sa = a.shape(), sb = b.shape();
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    record("sub", {a, b}, {out}, [=](const Grads& g) {
      return Grads{ga ? reduce_to(g[0], sa) : Tensor(), gb ? reduce_to(ops::neg(g[0]), sb) : Tensor()};
    });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = ops::mul(a, b);
  if (needs_grad({a, b})) {
    const Shape sa = a.shape(), sb = b.shape();
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    // Save each operand only when the other one needs its gradient.
    record("mul", {a, b}, {out}, [=, a_ = gb ? SavedTensor(a) : SavedTensor(), b_ = ga ? SavedTensor(b) : SavedTensor()](
                                     const Grads& g) {
      return Grads{ga ? reduce_to(ops::mul(g[0], b_.unpack("mul")), sa) : Tensor(),
                   gb ? reduce_to(ops::mul(g[0], a_.unpack("mul")), sb) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = ops::div(a, b);
  if (needs_grad({a, b})) {
    const Shape sa = a.shape(), sb = b.shape();
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -out/b.
    record("div", {a, b}, {out}, [=, b_ = SavedTensor(b), out_ = gb ? SavedTensor(out) : SavedTensor()](const Grads& g) {
      Tensor g_over_b = ops::div(g[0], b_.unpack("div"));
      Tensor gb_full = gb ? ops::neg(ops::mul(g_over_b, out_.unpack("div"))) : Tensor();
      return Grads{ga ? reduce_to(g_over_b, sa) : Tensor(), gb ? reduce_to(gb_full, sb) : Tensor()};
    });
  }
  return out;
}

Tensor add_scalar(const Tensor& a, double s) {
  Tensor out = ops::add_scalar(a, s);
  if (needs_grad({a})) record("add_scalar", {a}, {out}, [](const Grads& g) { return Grads{g[0]}; });
  return out;
}

Tensor mul_scalar(const Tensor& a, double s) {
  Tensor out = ops::mul_scalar(a, s);
  if (needs_grad({a}))
    record("mul_scalar", {a}, {out}, [s](const Grads& g) { return Grads{ops::mul_scalar(g[0], s)}; });
  return out;
}

Tensor neg(const Tensor& a) {
  Tensor out = ops::neg(a);
  if (needs_grad({a})) record("neg", {a}, {out}, [](const Grads& g) { return Grads{ops::neg(g[0])}; });
  return out;
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, double s) { return add_scalar(a, s); }
Tensor operator*(const Tensor& a, double s) { return mul_scalar(a, s); }
Tensor operator*(double s, const Tensor& a) { return mul_scalar(a, s); }

}  // namespace shardlab
