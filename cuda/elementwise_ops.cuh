// Internal to the CUDA element-wise family (cuda/elementwise_*kernels.cu): the argument checks of
// the CPU kernels (same messages), functor wrappers that compute in acc_t<T> and round once, the
// one-call out-of-place launchers, and the registration hooks of the family's files.
#pragma once

#include <cmath>
#include <type_traits>

#include "core/checks.h"
#include "core/device_kernels.h"
#include "cuda/elementwise_launch.cuh"

namespace shardlab::cuda {

// Filled by cuda/elementwise_arith_kernels.cu and cuda/elementwise_math_kernels.cu; called by
// register_elementwise_kernels (cuda/elementwise_kernels.cu, which holds comparisons and where).
void register_elementwise_arith_kernels(DeviceKernels& k);
void register_elementwise_math_kernels(DeviceKernels& k);

// As core/cpu/elementwise_loops.h's check_binary: devices, dtypes, then the broadcast shape.
inline Shape check_binary(const char* op, const Tensor& a, const Tensor& b) {
  check_cuda_args(op, {a, b});
  check_same_dtype(op, a, b);
  return broadcast_shapes(a.shape(), b.shape(), op);
}

// As core/cpu/elementwise_loops.h's check_float_op (same message).
inline void check_float_op(const char* op, const Tensor& t) {
  SL_CHECK(is_floating(t.dtype()), op, ": needs a floating tensor (f32, f64, bf16 or f16), got ",
           dtype_name(t.dtype()), " tensor of shape ", shape_str(t.shape()));
}

// T -> T through f: A -> A with A = acc_t<T> (f32 for 16-bit floats, i64 for small integers).
template <typename T, typename F>
struct MapUnary {
  F f;
  __device__ T operator()(T x) const { return from_acc<T>(f(to_acc(x))); }
};

template <typename T, typename F>
struct MapBinary {
  F f;
  __device__ T operator()(T x, T y) const { return from_acc<T>(f(to_acc(x), to_acc(y))); }
};

// out = f(a) elementwise, a fresh tensor of a's shape and dtype (T is a's CUDA element type).
template <typename T, typename F>
Tensor unary_map(const char* op, const Tensor& a, F f) {
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  launch_elementwise<T>(op, out, MapUnary<T, F>{f}, operand<T>(a));
  return out;
}

// out = f(a, b) over the broadcast `shape` (from check_binary).
template <typename T, typename F>
Tensor binary_map(const char* op, const Shape& shape, const Tensor& a, const Tensor& b, F f) {
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  launch_elementwise<T>(op, out, MapBinary<T, F>{f}, operand<T>(a), operand<T>(b));
  return out;
}

// x * y rounded on its own, never fused into a following add: the CPU kernels round the product
// (x86-64 without FMA), and matching them keeps CPU and GPU results equal bit for bit.
template <typename A>
__device__ __forceinline__ A mul_rn(A x, A y) {
  if constexpr (std::is_same_v<A, float>) return __fmul_rn(x, y);
  else if constexpr (std::is_same_v<A, double>) return __dmul_rn(x, y);
  else return x * y;
}

}  // namespace shardlab::cuda
