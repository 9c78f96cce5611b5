// SwiGLU on the CPU: out = silu(gate) * up, and its backward, as one pass over strided operands
// (the Llama MLP's gate and up projections are often views of one fused matmul output).
#include <cmath>

#include "core/checks.h"
#include "core/cpu/loops.h"
#include "core/ops/fused.h"

namespace shardlab::ops {

namespace {

void check_pair(const char* op, const char* a_name, const Tensor& a, const char* b_name, const Tensor& b) {
  check_float(op, a);
  check_same_dtype(op, a, b);
  SL_CHECK(a.shape() == b.shape(), op, ": ", a_name, " of shape ", shape_str(a.shape()), " and ", b_name,
           " of shape ", shape_str(b.shape()), " must have the same shape");
}

template <typename A>
inline A sigmoid_of(A g) {
  return A(1) / (A(1) + std::exp(-g));
}

}  // namespace

Tensor swiglu_fwd(const Tensor& gate, const Tensor& up) {
  const char* op = "swiglu_fwd";
  check_cpu(op, {gate, up});
  check_pair(op, "gate", gate, "up", up);
  Tensor out = Tensor::empty(gate.shape(), gate.dtype(), gate.device());
  dispatch_float(gate.dtype(), op, [&]<typename T>() {
    using A = acc_t<T>;
    T* o = static_cast<T*>(out.storage()->data());
    const T* g = static_cast<const T*>(gate.storage()->data());
    const T* u = static_cast<const T*>(up.storage()->data());
    cpu::strided_loop<3>(out.shape(), {out.strides(), gate.strides(), up.strides()},
                         {out.offset(), gate.offset(), up.offset()}, [&](auto off, auto st, int64_t n) {
                           for (int64_t k = 0; k < n; ++k) {
                             const A gv = static_cast<A>(g[off[1] + k * st[1]]);
                             const A uv = static_cast<A>(u[off[2] + k * st[2]]);
                             o[off[0] + k * st[0]] = static_cast<T>(gv * sigmoid_of(gv) * uv);
                           }
                         });
  });
  return out;
}

// d/dg silu(g) = sig(g) + g sig(g) (1 - sig(g)) = sig(g) (1 + g (1 - sig(g))).
SwigluGrads swiglu_bwd(const Tensor& dout, const Tensor& gate, const Tensor& up) {
  const char* op = "swiglu_bwd";
  check_cpu(op, {dout, gate, up});
  check_pair(op, "gate", gate, "up", up);
  check_pair(op, "dout", dout, "gate", gate);
  SwigluGrads grads{Tensor::empty(gate.shape(), gate.dtype(), gate.device()),
                    Tensor::empty(up.shape(), up.dtype(), up.device())};
  dispatch_float(gate.dtype(), op, [&]<typename T>() {
    using A = acc_t<T>;
    T* dg = static_cast<T*>(grads.dgate.storage()->data());
    T* du = static_cast<T*>(grads.dup.storage()->data());
    const T* d = static_cast<const T*>(dout.storage()->data());
    const T* g = static_cast<const T*>(gate.storage()->data());
    const T* u = static_cast<const T*>(up.storage()->data());
    cpu::strided_loop<5>(
        gate.shape(), {grads.dgate.strides(), grads.dup.strides(), dout.strides(), gate.strides(), up.strides()},
        {grads.dgate.offset(), grads.dup.offset(), dout.offset(), gate.offset(), up.offset()},
        [&](auto off, auto st, int64_t n) {
          for (int64_t k = 0; k < n; ++k) {
            const A dv = static_cast<A>(d[off[2] + k * st[2]]);
            const A gv = static_cast<A>(g[off[3] + k * st[3]]);
            const A uv = static_cast<A>(u[off[4] + k * st[4]]);
            const A sg = sigmoid_of(gv);
            dg[off[0] + k * st[0]] = static_cast<T>(dv * uv * sg * (A(1) + gv * (A(1) - sg)));
            du[off[1] + k * st[1]] = static_cast<T>(dv * gv * sg);
          }
        });
  });
  return grads;
}

}  // namespace shardlab::ops
