// SwiGLU on the CPU: out = silu(gate) * up, and its backward, as one pass over strided operands
// (the Llama MLP's gate and up projections are often views of one fused matmul output).
#include <Eigen/Core>

#include <algorithm>

#include "core/device_kernels.h"
#include "core/checks.h"
#include "core/cpu/loops.h"
#include "core/ops/fused.h"
#include "core/trace.h"

namespace shardlab::ops {

namespace {

void check_pair(const char* op, const char* a_name, const Tensor& a, const char* b_name, const Tensor& b) {
  check_float(op, a);
  check_same_dtype(op, a, b);
  SL_CHECK(a.shape() == b.shape(), op, ": ", a_name, " of shape ", shape_str(a.shape()), " and ", b_name,
           " of shape ", shape_str(b.shape()), " must have the same shape");
}

// Elements are processed in blocks gathered into arithmetic-type buffers, so that the sigmoid
// runs through Eigen's SIMD exp (std::exp in a loop stays scalar without -ffast-math) and one
// code path serves every stride and dtype.
constexpr int64_t kBlock = 256;

template <typename A>
using ArrayMap = Eigen::Map<Eigen::Array<A, Eigen::Dynamic, 1>>;

template <typename T, typename A = acc_t<T>>
void gather(const T* src, int64_t stride, int64_t n, A* dst) {
  for (int64_t k = 0; k < n; ++k) dst[k] = static_cast<A>(src[k * stride]);
}

template <typename T, typename A = acc_t<T>>
void scatter(const A* src, int64_t n, T* dst, int64_t stride) {
  for (int64_t k = 0; k < n; ++k) dst[k * stride] = static_cast<T>(src[k]);
}

}  // namespace

Tensor swiglu_fwd(const Tensor& gate, const Tensor& up) {
  SL_FORWARD_TO_DEVICE(swiglu_fwd, gate.device(), gate, up);
  SL_TRACE_OP("swiglu_fwd", gate, up);
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
                           alignas(64) A gb[kBlock], ub[kBlock];
                           for (int64_t b = 0; b < n; b += kBlock) {
                             const int64_t m = std::min(kBlock, n - b);
                             gather(g + off[1] + b * st[1], st[1], m, gb);
                             gather(u + off[2] + b * st[2], st[2], m, ub);
                             ArrayMap<A> G(gb, m), U(ub, m);
                             U = G * U / (A(1) + (-G).exp());
                             scatter(ub, m, o + off[0] + b * st[0], st[0]);
                           }
                         });
  });
  return out;
}

// d/dg silu(g) = sig(g) + g sig(g) (1 - sig(g)) = sig(g) (1 + g (1 - sig(g))).
SwigluGrads swiglu_bwd(const Tensor& dout, const Tensor& gate, const Tensor& up) {
  SL_FORWARD_TO_DEVICE(swiglu_bwd, dout.device(), dout, gate, up);
  SL_TRACE_OP("swiglu_bwd", dout, gate);
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
          alignas(64) A db[kBlock], gb[kBlock], ub[kBlock], sb[kBlock];
          for (int64_t b = 0; b < n; b += kBlock) {
            const int64_t m = std::min(kBlock, n - b);
            gather(d + off[2] + b * st[2], st[2], m, db);
            gather(g + off[3] + b * st[3], st[3], m, gb);
            gather(u + off[4] + b * st[4], st[4], m, ub);
            ArrayMap<A> D(db, m), G(gb, m), U(ub, m), S(sb, m);
            S = (A(1) + (-G).exp()).inverse();  // sigmoid(g)
            U = D * U * S * (A(1) + G * (A(1) - S));  // dgate, in up's buffer
            S = D * G * S;                            // dup = dout * silu(g)
            scatter(ub, m, dg + off[0] + b * st[0], st[0]);
            scatter(sb, m, du + off[1] + b * st[1], st[1]);
          }
        });
  });
  return grads;
}

}  // namespace shardlab::ops
