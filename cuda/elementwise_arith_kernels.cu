// CUDA element-wise arithmetic over every numeric dtype (as core/cpu/elementwise_arith.cc): add,
// sub, mul, div (floats only), neg, add_scalar, mul_scalar and the in-place add_ / mul_.
#include "cuda/elementwise_ops.cuh"

namespace shardlab::cuda {

namespace {

struct AddFn {
  template <typename A>
  __device__ A operator()(A x, A y) const { return x + y; }
};
struct SubFn {
  template <typename A>
  __device__ A operator()(A x, A y) const { return x - y; }
};
struct MulFn {
  template <typename A>
  __device__ A operator()(A x, A y) const { return x * y; }
};
struct DivFn {
  template <typename A>
  __device__ A operator()(A x, A y) const { return x / y; }
};
template <typename A>
struct AddScaledFn {  // x + alpha * y, the product rounded on its own as on the CPU
  A alpha;
  __device__ A operator()(A x, A y) const { return x + mul_rn(alpha, y); }
};
struct NegFn {
  template <typename A>
  __device__ A operator()(A x) const { return -x; }
};
template <typename A>
struct AddScalarFn {
  A s;
  __device__ A operator()(A x) const { return x + s; }
};
template <typename A>
struct MulScalarFn {
  A s;
  __device__ A operator()(A x) const { return x * s; }
};

// A double scalar in the arithmetic type of T; a fractional scalar for an integer tensor is an
// error naming the op (the CPU kernels' rule and message).
template <typename T>
acc_t<T> scalar_as(const char* op, double s, const Tensor& t) {
  if constexpr (std::is_integral_v<T>) {
    SL_CHECK(std::trunc(s) == s, op, ": scalar ", s, " is not an integer but the tensor of shape ",
             shape_str(t.shape()), " has integer dtype ", dtype_name(t.dtype()));
  }
  return static_cast<acc_t<T>>(s);
}

template <typename F>
Tensor binary_numeric(const char* op, const Tensor& a, const Tensor& b, F f) {
  const Shape shape = check_binary(op, a, b);
  Tensor out;
  dispatch_cuda_numeric(a.dtype(), op, [&]<typename T>() { out = binary_map<T>(op, shape, a, b, f); });
  return out;
}

Tensor add(const Tensor& a, const Tensor& b) { return binary_numeric("add", a, b, AddFn{}); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary_numeric("sub", a, b, SubFn{}); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary_numeric("mul", a, b, MulFn{}); }

Tensor div(const Tensor& a, const Tensor& b) {
  // Integers are rejected as on the CPU (no promotion, so no answer matching true division).
  const Shape shape = check_binary("div", a, b);
  check_float_op("div", a);
  Tensor out;
  dispatch_cuda_float(a.dtype(), "div", [&]<typename T>() { out = binary_map<T>("div", shape, a, b, DivFn{}); });
  return out;
}

Tensor neg(const Tensor& a) {
  check_cuda_args("neg", {a});
  Tensor out;
  dispatch_cuda_numeric(a.dtype(), "neg", [&]<typename T>() { out = unary_map<T>("neg", a, NegFn{}); });
  return out;
}

Tensor add_scalar(const Tensor& a, double s) {
  check_cuda_args("add_scalar", {a});
  Tensor out;
  dispatch_cuda_numeric(a.dtype(), "add_scalar", [&]<typename T>() {
    out = unary_map<T>("add_scalar", a, AddScalarFn<acc_t<T>>{scalar_as<T>("add_scalar", s, a)});
  });
  return out;
}

Tensor mul_scalar(const Tensor& a, double s) {
  check_cuda_args("mul_scalar", {a});
  Tensor out;
  dispatch_cuda_numeric(a.dtype(), "mul_scalar", [&]<typename T>() {
    out = unary_map<T>("mul_scalar", a, MulScalarFn<acc_t<T>>{scalar_as<T>("mul_scalar", s, a)});
  });
  return out;
}

// dst += alpha * src, src broadcast to dst. dst is both the output and the first input at the
// same offsets, so each element is read and written by one thread (element-wise aliasing is safe).
void add_(const Tensor& dst, const Tensor& src, double alpha) {
  check_cuda_args("add_", {dst, src});
  check_same_dtype("add_", dst, src);
  const Shape shape = broadcast_shapes(dst.shape(), src.shape(), "add_");
  SL_CHECK(shape == dst.shape(), "add_: source of shape ", shape_str(src.shape()),
           " cannot be broadcast to destination shape ", shape_str(dst.shape()));
  dispatch_cuda_numeric(dst.dtype(), "add_", [&]<typename T>() {
    const acc_t<T> al = scalar_as<T>("add_", alpha, dst);
    dst.bump_version();  // after every check: a failed call leaves dst and its version untouched
    if (alpha == 1.0)
      launch_elementwise<T>("add_", dst, MapBinary<T, AddFn>{}, operand<T>(dst), operand<T>(src));
    else
      launch_elementwise<T>("add_", dst, MapBinary<T, AddScaledFn<acc_t<T>>>{{al}}, operand<T>(dst),
                            operand<T>(src));
  });
}

void mul_(const Tensor& dst, double s) {
  check_cuda_args("mul_", {dst});
  dispatch_cuda_numeric(dst.dtype(), "mul_", [&]<typename T>() {
    const acc_t<T> v = scalar_as<T>("mul_", s, dst);
    dst.bump_version();
    launch_elementwise<T>("mul_", dst, MapUnary<T, MulScalarFn<acc_t<T>>>{{v}}, operand<T>(dst));
  });
}

}  // namespace

void register_elementwise_arith_kernels(DeviceKernels& k) {
  k.add = &add;
  k.sub = &sub;
  k.mul = &mul;
  k.div = &div;
  k.neg = &neg;
  k.add_scalar = &add_scalar;
  k.mul_scalar = &mul_scalar;
  k.add_ = &add_;
  k.mul_ = &mul_;
}

}  // namespace shardlab::cuda
