// CPU kernels for comparisons (u8 masks, 1 where true) and where(cond, a, b) with three-way
// broadcasting. Comparisons accept every numeric dtype; 16-bit floats compare in f32 (exact).
#include "core/device_kernels.h"
#include "core/cpu/elementwise_loops.h"
#include "core/ops/elementwise.h"

namespace shardlab::ops {

namespace {

template <typename Cmp>
Tensor compare(const char* op, const Tensor& a, const Tensor& b, Cmp cmp) {
  Shape shape = cpu::check_binary(op, a, b);
  Tensor out = Tensor::empty(shape, DType::u8, a.device());
  dispatch_numeric(a.dtype(), op, [&]<typename T>() {
    cpu::binary_loop<T, uint8_t>(out, a, b, [&](T x, T y) {
      return static_cast<uint8_t>(cmp(static_cast<acc_t<T>>(x), static_cast<acc_t<T>>(y)));
    });
  });
  return out;
}

}  // namespace

Tensor eq(const Tensor& a, const Tensor& b) {
  SL_FORWARD_TO_DEVICE(eq, a.device(), a, b);
  return compare("eq", a, b, [](auto x, auto y) { return x == y; });
}
Tensor ne(const Tensor& a, const Tensor& b) {
  SL_FORWARD_TO_DEVICE(ne, a.device(), a, b);
  return compare("ne", a, b, [](auto x, auto y) { return x != y; });
}
Tensor lt(const Tensor& a, const Tensor& b) {
  SL_FORWARD_TO_DEVICE(lt, a.device(), a, b);
  return compare("lt", a, b, [](auto x, auto y) { return x < y; });
}
Tensor le(const Tensor& a, const Tensor& b) {
  SL_FORWARD_TO_DEVICE(le, a.device(), a, b);
  return compare("le", a, b, [](auto x, auto y) { return x <= y; });
}
Tensor gt(const Tensor& a, const Tensor& b) {
  SL_FORWARD_TO_DEVICE(gt, a.device(), a, b);
  return compare("gt", a, b, [](auto x, auto y) { return x > y; });
}
Tensor ge(const Tensor& a, const Tensor& b) {
  SL_FORWARD_TO_DEVICE(ge, a.device(), a, b);
  return compare("ge", a, b, [](auto x, auto y) { return x >= y; });
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  SL_FORWARD_TO_DEVICE(where, cond.device(), cond, a, b);
  check_cpu("where", {cond, a, b});
  check_same_device("where", cond, a);
  check_same_device("where", a, b);
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
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  dispatch_numeric(a.dtype(), "where", [&]<typename T>() {
    T* po = cpu::base_ptr<T>(out);
    const uint8_t* pc = cpu::base_ptr<const uint8_t>(cond);
    const T* pa = cpu::base_ptr<const T>(a);
    const T* pb = cpu::base_ptr<const T>(b);
    cpu::strided_loop<4>(
        shape,
        {out.strides(), cpu::broadcast_strides(cond, shape), cpu::broadcast_strides(a, shape),
         cpu::broadcast_strides(b, shape)},
        {out.offset(), cond.offset(), a.offset(), b.offset()}, [&](const auto& off, const auto& st, int64_t n) {
          T* o = po + off[0];
          const uint8_t* c = pc + off[1];
          const T* x = pa + off[2];
          const T* y = pb + off[3];
          if (st[0] == 1 && st[1] == 1 && st[2] == 1 && st[3] == 1) {
            for (int64_t k = 0; k < n; ++k) o[k] = c[k] ? x[k] : y[k];
          } else {
            for (int64_t k = 0; k < n; ++k) o[k * st[0]] = c[k * st[1]] ? x[k * st[2]] : y[k * st[3]];
          }
        });
  });
  return out;
}

}  // namespace shardlab::ops
