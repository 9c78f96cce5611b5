// Internal to the element-wise CPU kernels (core/cpu/elementwise_*.cc): output allocation with
// broadcasting, and the inner loops over cpu::strided_loop. Cheap ops (add, mul, compare) run as
// plain loops the compiler vectorises; transcendental ops go through Eigen's SIMD array functions
// on small blocks loaded in the arithmetic type (f32 for bf16/f16), rounding once on store.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/checks.h"
#include "core/cpu/loops.h"

namespace shardlab::cpu {

// Elements per block for the Eigen paths: small enough for the stack / L1, large enough for SIMD.
inline constexpr int64_t kEwBlock = 256;

template <typename T>
using EwArray = Eigen::Array<T, Eigen::Dynamic, 1>;

// Element pointer at the storage base (offsets from strided_loop already include t.offset()).
template <typename T>
inline T* base_ptr(const Tensor& t) {
  return static_cast<T*>(t.storage()->data());
}

// dtype/device checks shared by every two-operand op; returns the broadcast shape.
inline Shape check_binary(const char* op, const Tensor& a, const Tensor& b) {
  check_cpu(op, {a, b});
  check_same_device(op, a, b);
  check_same_dtype(op, a, b);
  return broadcast_shapes(a.shape(), b.shape(), op);
}

// Transcendental ops are defined on floats only; the message names the op, dtype and shape.
inline void check_float_op(const char* op, const Tensor& t) {
  SL_CHECK(is_floating(t.dtype()), op, ": needs a floating tensor (f32, f64, bf16 or f16), got ",
           dtype_name(t.dtype()), " tensor of shape ", shape_str(t.shape()));
}

// out[i] = f(a[i]) with f: (T) -> O, over a fresh output.
template <typename T, typename O, typename F>
void unary_loop(const Tensor& out, const Tensor& a, F&& f) {
  O* po = base_ptr<O>(out);
  const T* pa = base_ptr<const T>(a);
  strided_loop<2>(out.shape(), {out.strides(), a.strides()}, {out.offset(), a.offset()},
                  [&](const auto& off, const auto& st, int64_t n) {
                    O* o = po + off[0];
                    const T* x = pa + off[1];
                    if (st[0] == 1 && st[1] == 1) {
                      for (int64_t k = 0; k < n; ++k) o[k] = f(x[k]);
                    } else {
                      for (int64_t k = 0; k < n; ++k) o[k * st[0]] = f(x[k * st[1]]);
                    }
                  });
}

// out[i] = f(a[i], b[i]) with a and b broadcast to out's shape and f: (T, T) -> O.
template <typename T, typename O, typename F>
void binary_loop(const Tensor& out, const Tensor& a, const Tensor& b, F&& f) {
  const Shape& shape = out.shape();
  O* po = base_ptr<O>(out);
  const T* pa = base_ptr<const T>(a);
  const T* pb = base_ptr<const T>(b);
  strided_loop<3>(shape, {out.strides(), broadcast_strides(a, shape), broadcast_strides(b, shape)},
                  {out.offset(), a.offset(), b.offset()}, [&](const auto& off, const auto& st, int64_t n) {
                    O* o = po + off[0];
                    const T* x = pa + off[1];
                    const T* y = pb + off[2];
                    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
                      for (int64_t k = 0; k < n; ++k) o[k] = f(x[k], y[k]);
                    } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {  // row op scalar (bias-like)
                      const T yv = *y;
                      for (int64_t k = 0; k < n; ++k) o[k] = f(x[k], yv);
                    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
                      const T xv = *x;
                      for (int64_t k = 0; k < n; ++k) o[k] = f(xv, y[k]);
                    } else {
                      for (int64_t k = 0; k < n; ++k) o[k * st[0]] = f(x[k * st[1]], y[k * st[2]]);
                    }
                  });
}

// Blocked Eigen path: f(X, Y) assigns Y (an Eigen array map of acc_t<T>) from X, a block of `a`
// in the same type. Writing into Y inside f keeps every Eigen temporary alive while it is read.
template <typename T, typename F>
void unary_array_loop(const Tensor& out, const Tensor& a, F&& f) {
  using A = acc_t<T>;
  T* po = base_ptr<T>(out);
  const T* pa = base_ptr<const T>(a);
  strided_loop<2>(out.shape(), {out.strides(), a.strides()}, {out.offset(), a.offset()},
                  [&](const auto& off, const auto& st, int64_t n) {
                    alignas(64) A xin[kEwBlock];
                    alignas(64) A yout[kEwBlock];
                    for (int64_t s = 0; s < n; s += kEwBlock) {
                      const int64_t m = std::min(kEwBlock, n - s);
                      T* o = po + off[0] + s * st[0];
                      const T* x = pa + off[1] + s * st[1];
                      if constexpr (std::is_same_v<T, A>) {
                        if (st[0] == 1 && st[1] == 1) {  // contiguous: no staging copies
                          Eigen::Map<EwArray<A>> y(o, m);
                          f(Eigen::Map<const EwArray<A>>(x, m), y);
                          continue;
                        }
                      }
                      for (int64_t k = 0; k < m; ++k) xin[k] = static_cast<A>(x[k * st[1]]);
                      Eigen::Map<EwArray<A>> y(yout, m);
                      f(Eigen::Map<const EwArray<A>>(xin, m), y);
                      for (int64_t k = 0; k < m; ++k) o[k * st[0]] = static_cast<T>(yout[k]);
                    }
                  });
}

// Two-input version of unary_array_loop, f(X, Y, Z), with a and b broadcast to out's shape.
template <typename T, typename F>
void binary_array_loop(const Tensor& out, const Tensor& a, const Tensor& b, F&& f) {
  using A = acc_t<T>;
  const Shape& shape = out.shape();
  T* po = base_ptr<T>(out);
  const T* pa = base_ptr<const T>(a);
  const T* pb = base_ptr<const T>(b);
  strided_loop<3>(shape, {out.strides(), broadcast_strides(a, shape), broadcast_strides(b, shape)},
                  {out.offset(), a.offset(), b.offset()}, [&](const auto& off, const auto& st, int64_t n) {
                    alignas(64) A xin[kEwBlock];
                    alignas(64) A yin[kEwBlock];
                    alignas(64) A zout[kEwBlock];
                    for (int64_t s = 0; s < n; s += kEwBlock) {
                      const int64_t m = std::min(kEwBlock, n - s);
                      T* o = po + off[0] + s * st[0];
                      const T* x = pa + off[1] + s * st[1];
                      const T* y = pb + off[2] + s * st[2];
                      if constexpr (std::is_same_v<T, A>) {
                        if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
                          Eigen::Map<EwArray<A>> z(o, m);
                          f(Eigen::Map<const EwArray<A>>(x, m), Eigen::Map<const EwArray<A>>(y, m), z);
                          continue;
                        }
                      }
                      for (int64_t k = 0; k < m; ++k) xin[k] = static_cast<A>(x[k * st[1]]);
                      for (int64_t k = 0; k < m; ++k) yin[k] = static_cast<A>(y[k * st[2]]);
                      Eigen::Map<EwArray<A>> z(zout, m);
                      f(Eigen::Map<const EwArray<A>>(xin, m), Eigen::Map<const EwArray<A>>(yin, m), z);
                      for (int64_t k = 0; k < m; ++k) o[k * st[0]] = static_cast<T>(zout[k]);
                    }
                  });
}

}  // namespace shardlab::cpu
