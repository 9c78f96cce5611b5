// Layout-making copies on the CPU: contiguous, clone, dtype conversion, copy_ and fill_.
#include <cstring>

#include "core/device_kernels.h"
#include "core/checks.h"
#include "core/cpu/loops.h"
#include "core/ops/views.h"
#include "core/strided.h"

namespace shardlab::ops {

void copy_(const Tensor& dst, const Tensor& src) {
  // Across devices (loading a checkpoint into a model on the GPU, say): the source comes over
  // first, then the copy runs on the destination's device (layout, dtype and broadcast included).
  if (src.device() != dst.device()) return copy_(dst, src.to(dst.device()));
  SL_FORWARD_TO_DEVICE(copy_, dst.device(), dst, src);
  check_cpu("copy_", {dst, src});
  Shape out = broadcast_shapes(dst.shape(), src.shape(), "copy_");
  SL_CHECK(out == dst.shape(), "copy_: source of shape ", shape_str(src.shape()),
           " cannot be broadcast to destination shape ", shape_str(dst.shape()));
  dst.bump_version();
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous() && src.shape() == dst.shape()) {
    std::memcpy(dst.raw_data(), src.raw_data(), static_cast<size_t>(dst.nbytes()));
    return;
  }
  dispatch_numeric(dst.dtype(), "copy_", [&]<typename D>() {
    dispatch_numeric(src.dtype(), "copy_", [&]<typename S>() {
      D* d = static_cast<D*>(dst.storage()->data());
      const S* s = static_cast<const S*>(src.storage()->data());
      cpu::strided_loop<2>(dst.shape(), {dst.strides(), cpu::broadcast_strides(src, dst.shape())},
                           {dst.offset(), src.offset()}, [&](auto off, auto st, int64_t n) {
                             for (int64_t k = 0; k < n; ++k)
                               d[off[0] + k * st[0]] = convert<D>(s[off[1] + k * st[1]]);
                           });
    });
  });
}

void fill_(const Tensor& dst, double value) {
  SL_FORWARD_TO_DEVICE(fill_, dst.device(), dst, value);
  check_cpu("fill_", {dst});
  dst.bump_version();
  dispatch_numeric(dst.dtype(), "fill_", [&]<typename T>() {
    T v = from_double<T>(value);
    T* d = static_cast<T*>(dst.storage()->data());
    cpu::strided_loop<1>(dst.shape(), {dst.strides()}, {dst.offset()}, [&](auto off, auto st, int64_t n) {
      for (int64_t k = 0; k < n; ++k) d[off[0] + k * st[0]] = v;
    });
  });
}

Tensor clone(const Tensor& t) {
  SL_CHECK(t.defined(), "clone: undefined tensor");  // empty + copy_: runs on any device
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  copy_(out, t);
  return out;
}

Tensor contiguous(const Tensor& t) { return t.is_contiguous() ? t : clone(t); }

Tensor to_dtype(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype) return t;
  Tensor out = Tensor::empty(t.shape(), dtype, t.device());
  copy_(out, t);
  return out;
}

}  // namespace shardlab::ops
