// CUDA element-wise math on floating tensors (as core/cpu/elementwise_math.cc): exp, log, sqrt,
// rsqrt, tanh, sigmoid, silu, gelu (exact erf form), pow, pow_scalar and the fused silu/gelu
// backward helpers. 16-bit floats compute in f32 with the accurate (non fast-math) CUDA functions.
#include "cuda/elementwise_ops.cuh"

namespace shardlab::cuda {

namespace {

constexpr double kInvSqrt2Pi = 0.398942280401432677939946059934;  // 1 / sqrt(2 pi)

// f32 / f64 overloads of the CUDA math library (the A of acc_t<T> is float or double here).
__device__ __forceinline__ float exp_a(float x) { return expf(x); }
__device__ __forceinline__ double exp_a(double x) { return ::exp(x); }
__device__ __forceinline__ float log_a(float x) { return logf(x); }
__device__ __forceinline__ double log_a(double x) { return ::log(x); }
__device__ __forceinline__ float sqrt_a(float x) { return sqrtf(x); }
__device__ __forceinline__ double sqrt_a(double x) { return ::sqrt(x); }
__device__ __forceinline__ float rsqrt_a(float x) { return rsqrtf(x); }
__device__ __forceinline__ double rsqrt_a(double x) { return ::rsqrt(x); }
__device__ __forceinline__ float tanh_a(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_a(double x) { return ::tanh(x); }
__device__ __forceinline__ float pow_a(float x, float e) { return powf(x, e); }
__device__ __forceinline__ double pow_a(double x, double e) { return ::pow(x, e); }
// Phi(x) = 0.5 (1 + erf(x / sqrt 2)), without the cancellation of 1 + erf for negative x.
__device__ __forceinline__ float normcdf_a(float x) { return normcdff(x); }
__device__ __forceinline__ double normcdf_a(double x) { return ::normcdf(x); }

template <typename A>
__device__ __forceinline__ A sigmoid_a(A x) {
  return A(1) / (A(1) + exp_a(-x));  // exp overflow for x << 0 gives 1 / inf = 0, as it should
}

struct ExpFn {
  template <typename A>
  __device__ A operator()(A x) const { return exp_a(x); }
};
struct LogFn {
  template <typename A>
  __device__ A operator()(A x) const { return log_a(x); }
};
struct SqrtFn {
  template <typename A>
  __device__ A operator()(A x) const { return sqrt_a(x); }
};
struct RsqrtFn {
  template <typename A>
  __device__ A operator()(A x) const { return rsqrt_a(x); }
};
struct TanhFn {
  template <typename A>
  __device__ A operator()(A x) const { return tanh_a(x); }
};
struct SigmoidFn {
  template <typename A>
  __device__ A operator()(A x) const { return sigmoid_a(x); }
};
struct SiluFn {  // x sigmoid(x)
  template <typename A>
  __device__ A operator()(A x) const { return x * sigmoid_a(x); }
};
struct GeluFn {  // x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
  template <typename A>
  __device__ A operator()(A x) const { return x * normcdf_a(x); }
};
struct SiluBackwardFn {  // g s (1 + x (1 - s)), s = sigmoid(x)
  template <typename A>
  __device__ A operator()(A g, A x) const {
    const A s = sigmoid_a(x);
    return g * s * (A(1) + x * (A(1) - s));
  }
};
struct GeluBackwardFn {  // g (Phi(x) + x phi(x)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
  template <typename A>
  __device__ A operator()(A g, A x) const {
    return g * (normcdf_a(x) + x * A(kInvSqrt2Pi) * exp_a(A(-0.5) * x * x));
  }
};
struct PowFn {
  template <typename A>
  __device__ A operator()(A x, A e) const { return pow_a(x, e); }
};

// pow_scalar's exact forms for common exponents (the CPU kernel's choices).
struct IdentityFn {
  template <typename A>
  __device__ A operator()(A x) const { return x; }
};
struct SquareFn {
  template <typename A>
  __device__ A operator()(A x) const { return x * x; }
};
struct CubeFn {
  template <typename A>
  __device__ A operator()(A x) const { return x * x * x; }
};
struct InverseFn {
  template <typename A>
  __device__ A operator()(A x) const { return A(1) / x; }
};
template <typename A>
struct PowConstFn {
  A e;
  __device__ A operator()(A x) const { return pow_a(x, e); }
};

template <typename F>
Tensor unary_float(const char* op, const Tensor& a, F f) {
  check_cuda_args(op, {a});
  check_float_op(op, a);
  Tensor out;
  dispatch_cuda_float(a.dtype(), op, [&]<typename T>() { out = unary_map<T>(op, a, f); });
  return out;
}

template <typename F>
Tensor binary_float(const char* op, const Tensor& a, const Tensor& b, F f) {
  const Shape shape = check_binary(op, a, b);
  check_float_op(op, a);
  Tensor out;
  dispatch_cuda_float(a.dtype(), op, [&]<typename T>() { out = binary_map<T>(op, shape, a, b, f); });
  return out;
}

// Named *_kernel so that the CUDA math functions above stay visible by their plain names.
Tensor exp_kernel(const Tensor& a) { return unary_float("exp", a, ExpFn{}); }
Tensor log_kernel(const Tensor& a) { return unary_float("log", a, LogFn{}); }
Tensor sqrt_kernel(const Tensor& a) { return unary_float("sqrt", a, SqrtFn{}); }
Tensor rsqrt_kernel(const Tensor& a) { return unary_float("rsqrt", a, RsqrtFn{}); }
Tensor tanh_kernel(const Tensor& a) { return unary_float("tanh", a, TanhFn{}); }
Tensor sigmoid_kernel(const Tensor& a) { return unary_float("sigmoid", a, SigmoidFn{}); }
Tensor silu_kernel(const Tensor& a) { return unary_float("silu", a, SiluFn{}); }
Tensor gelu_kernel(const Tensor& a) { return unary_float("gelu", a, GeluFn{}); }

Tensor silu_backward_kernel(const Tensor& grad, const Tensor& x) {
  return binary_float("silu_backward", grad, x, SiluBackwardFn{});
}
Tensor gelu_backward_kernel(const Tensor& grad, const Tensor& x) {
  return binary_float("gelu_backward", grad, x, GeluBackwardFn{});
}
Tensor pow_kernel(const Tensor& a, const Tensor& b) { return binary_float("pow", a, b, PowFn{}); }

Tensor pow_scalar_kernel(const Tensor& a, double exponent) {
  const char* op = "pow_scalar";
  check_cuda_args(op, {a});
  check_float_op(op, a);
  Tensor out;
  dispatch_cuda_float(a.dtype(), op, [&]<typename T>() {
    if (exponent == 1.0) out = unary_map<T>(op, a, IdentityFn{});
    else if (exponent == 2.0) out = unary_map<T>(op, a, SquareFn{});
    else if (exponent == 3.0) out = unary_map<T>(op, a, CubeFn{});
    else if (exponent == 0.5) out = unary_map<T>(op, a, SqrtFn{});
    else if (exponent == -0.5) out = unary_map<T>(op, a, RsqrtFn{});
    else if (exponent == -1.0) out = unary_map<T>(op, a, InverseFn{});
    else out = unary_map<T>(op, a, PowConstFn<acc_t<T>>{static_cast<acc_t<T>>(exponent)});
  });
  return out;
}

}  // namespace

void register_elementwise_math_kernels(DeviceKernels& k) {
  k.exp = &exp_kernel;
  k.log = &log_kernel;
  k.sqrt = &sqrt_kernel;
  k.rsqrt = &rsqrt_kernel;
  k.tanh = &tanh_kernel;
  k.sigmoid = &sigmoid_kernel;
  k.silu = &silu_kernel;
  k.gelu = &gelu_kernel;
  k.silu_backward = &silu_backward_kernel;
  k.gelu_backward = &gelu_backward_kernel;
  k.pow = &pow_kernel;
  k.pow_scalar = &pow_scalar_kernel;
}

}  // namespace shardlab::cuda
