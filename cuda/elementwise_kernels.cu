// CUDA kernels of the elementwise family behind the op API (see cuda/kernel_registry.h): the
// comparisons (u8 masks) and where(cond, a, b) here, arithmetic and math in elementwise_*_kernels.cu.
#include "cuda/elementwise_ops.cuh"
#include "cuda/kernel_registry.h"

namespace shardlab::cuda {

namespace {

struct EqFn {
  template <typename A>
  __device__ bool operator()(A x, A y) const { return x == y; }
};
struct NeFn {
  template <typename A>
  __device__ bool operator()(A x, A y) const { return x != y; }
};
struct LtFn {
  template <typename A>
  __device__ bool operator()(A x, A y) const { return x < y; }
};
struct LeFn {
  template <typename A>
  __device__ bool operator()(A x, A y) const { return x <= y; }
};
struct GtFn {
  template <typename A>
  __device__ bool operator()(A x, A y) const { return x > y; }
};
struct GeFn {
  template <typename A>
  __device__ bool operator()(A x, A y) const { return x >= y; }
};

// 1 where cmp(x, y); 16-bit floats compare in f32 (exact), small integers in i64 (exact).
template <typename T, typename Cmp>
struct CompareOp {
  __device__ uint8_t operator()(T x, T y) const { return Cmp{}(to_acc(x), to_acc(y)) ? 1 : 0; }
};

template <typename Cmp>
Tensor compare(const char* op, const Tensor& a, const Tensor& b) {
  const Shape shape = check_binary(op, a, b);
  Tensor out = Tensor::empty(shape, DType::u8, a.device());
  dispatch_cuda_numeric(a.dtype(), op, [&]<typename T>() {
    launch_elementwise<uint8_t>(op, out, CompareOp<T, Cmp>{}, operand<T>(a), operand<T>(b));
  });
  return out;
}

Tensor eq(const Tensor& a, const Tensor& b) { return compare<EqFn>("eq", a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare<NeFn>("ne", a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare<LtFn>("lt", a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return compare<LeFn>("le", a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare<GtFn>("gt", a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare<GeFn>("ge", a, b); }

// Selects whole elements (no arithmetic), so it runs on unsigned words of the element size.
template <typename U>
struct WhereOp {
  __device__ U operator()(uint8_t c, U x, U y) const { return c ? x : y; }
};

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_cuda_args("where", {cond, a, b});
  SL_CHECK(cond.dtype() == DType::u8, "where: condition must be a u8 mask, got ", dtype_name(cond.dtype()),
           " tensor of shape ", shape_str(cond.shape()));
  check_same_dtype("where", a, b);
  Shape shape;
  try {
    shape = broadcast_shapes(cond.shape(), broadcast_shapes(a.shape(), b.shape(), "where"), "where");
  } catch (const Error&) {  // name all three shapes, not the intermediate broadcast
    SL_FAIL("where: shapes cond ", shape_str(cond.shape()), ", a ", shape_str(a.shape()), " and b ",
            shape_str(b.shape()), " cannot be broadcast together");
  }
  SL_CHECK(!traits(a.dtype()).is_quantized, "where: dtype ", dtype_name(a.dtype()), " has no element-wise kernels");
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  dispatch_cuda_bits(dtype_size(a.dtype()), "where", [&]<typename U>() {
    launch_elementwise<U>("where", out, WhereOp<U>{}, operand<uint8_t>(cond), operand<U>(a), operand<U>(b));
  });
  return out;
}

}  // namespace

void register_elementwise_kernels(DeviceKernels& k) {
  k.eq = &eq;
  k.ne = &ne;
  k.lt = &lt;
  k.le = &le;
  k.gt = &gt;
  k.ge = &ge;
  k.where = &where;
  register_elementwise_arith_kernels(k);
  register_elementwise_math_kernels(k);
}

}  // namespace shardlab::cuda
