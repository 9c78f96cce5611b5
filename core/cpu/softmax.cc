// CPU softmax and log-softmax along one dim, and their backward kernels. The input is viewed as
// contiguous (O, R, I): each of the O*I lines of R elements (stride I) is independent, so lines
// are split across threads. Stable: every line subtracts its max before exponentiating.
#include <omp.h>

#include <cmath>
#include <vector>

#include "core/device_kernels.h"
#include "core/checks.h"
#include "core/cpu/loops.h"
#include "core/ops/reduce.h"
#include "core/ops/views.h"
#include "core/strided.h"
#include "core/reduce_layout.h"

namespace shardlab::ops {

namespace {

// Calls line(o * R * I + i, I) for each of the O*I lines (the element offset of its first element
// and its stride), in parallel when the tensor is big enough. Stride 1 is passed as a
// compile-time constant so the common last-dim case gets a unit-stride loop.
template <typename Line>
void for_each_line(const LineLayout& L, Line&& line) {
  const int64_t lines = L.O * L.I;
  const bool parallel = lines > 1 && lines * L.R >= cpu::kParallelGrain && !omp_in_parallel();
  if (L.I == 1) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t o = 0; o < L.O; ++o) line(o * L.R, std::integral_constant<int64_t, 1>{});
  } else {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t k = 0; k < lines; ++k) line((k / L.I) * L.R * L.I + k % L.I, L.I);
  }
}

// Shared body of softmax (log = false) and log_softmax (log = true).
Tensor softmax_impl(const char* op, const Tensor& t, int64_t dim, bool log) {
  check_cpu(op, {t});
  check_float(op, t);
  const int64_t nd = std::max<int64_t>(t.dim(), 1);  // a scalar is one line of one element
  SL_CHECK(dim >= -nd && dim < nd, op, ": dim ", dim, " is out of range for a tensor of shape ", shape_str(t.shape()));
  const int64_t d = dim < 0 ? dim + nd : dim;
  Tensor x = contiguous(t);
  Tensor y = Tensor::empty(t.shape(), t.dtype(), t.device());
  LineLayout L = line_layout(t.dim() == 0 ? Shape{1} : t.shape(), d);
  if (L.R == 0) return y;
  dispatch_float(t.dtype(), op, [&]<typename T>() {
    using A = acc_t<T>;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    for_each_line(L, [&](int64_t base, auto stride) {
      const T* in = xp + base;
      T* out = yp + base;
      // The exponentials are kept for the scaling pass: in the output itself when it has the
      // arithmetic type, else in a per-thread f32 line buffer (so 16-bit types round only once).
      thread_local std::vector<A> line_buffer;
      A* e = nullptr;
      int64_t e_stride = 1;
      if constexpr (std::is_same_v<T, A>) {
        e = out;
        e_stride = stride;
      } else if (!log) {
        if (static_cast<int64_t>(line_buffer.size()) < L.R) line_buffer.resize(L.R);
        e = line_buffer.data();
      }
      A mx = static_cast<A>(in[0]);
      for (int64_t r = 1; r < L.R; ++r) mx = std::max(mx, static_cast<A>(in[r * stride]));
      A total = 0;
      for (int64_t r = 0; r < L.R; ++r) {
        const A v = std::exp(static_cast<A>(in[r * stride]) - mx);
        total += v;
        if (!log) e[r * e_stride] = v;
      }
      if (log) {
        const A shift = mx + std::log(total);
        for (int64_t r = 0; r < L.R; ++r) out[r * stride] = static_cast<T>(static_cast<A>(in[r * stride]) - shift);
      } else {
        const A inv = A(1) / total;
        for (int64_t r = 0; r < L.R; ++r) out[r * stride] = static_cast<T>(e[r * e_stride] * inv);
      }
    });
  });
  return y;
}

// Shared body of the two backward kernels: both need one sum per line, then an element-wise map.
//   softmax:     dx = y * (dy - sum(dy * y))
//   log_softmax: dx = dy - exp(y) * sum(dy)
Tensor softmax_backward_impl(const char* op, const Tensor& grad, const Tensor& y, int64_t dim, bool log) {
  check_cpu(op, {grad, y});
  check_same_device(op, grad, y);
  check_same_dtype(op, grad, y);
  check_float(op, y);
  SL_CHECK(grad.shape() == y.shape(), op, ": gradient of shape ", shape_str(grad.shape()),
           " does not match the output of shape ", shape_str(y.shape()));
  const int64_t d = wrap_dim(dim, std::max<int64_t>(y.dim(), 1), op);
  Tensor g = contiguous(grad), yc = contiguous(y);
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
  LineLayout L = line_layout(y.dim() == 0 ? Shape{1} : y.shape(), d);
  if (L.R == 0) return dx;
  dispatch_float(y.dtype(), op, [&]<typename T>() {
    using A = acc_t<T>;
    const T* gp = g.data<T>();
    const T* yp = yc.data<T>();
    T* out = dx.data<T>();
    for_each_line(L, [&](int64_t base, auto stride) {
      const T* gl = gp + base;
      const T* yl = yp + base;
      T* ol = out + base;
      A dot = 0;
      for (int64_t r = 0; r < L.R; ++r) {
        const A gv = static_cast<A>(gl[r * stride]);
        dot += log ? gv : gv * static_cast<A>(yl[r * stride]);
      }
      for (int64_t r = 0; r < L.R; ++r) {
        const A gv = static_cast<A>(gl[r * stride]), yv = static_cast<A>(yl[r * stride]);
        ol[r * stride] = static_cast<T>(log ? gv - std::exp(yv) * dot : yv * (gv - dot));
      }
    });
  });
  return dx;
}

}  // namespace

Tensor softmax(const Tensor& t, int64_t dim) {
  SL_FORWARD_TO_DEVICE(softmax, t.device(), t, dim); return softmax_impl("softmax", t, dim, false); }

Tensor log_softmax(const Tensor& t, int64_t dim) {
  SL_FORWARD_TO_DEVICE(log_softmax, t.device(), t, dim); return softmax_impl("log_softmax", t, dim, true); }

Tensor softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim) {
  SL_FORWARD_TO_DEVICE(softmax_backward, grad.device(), grad, y, dim);
  return softmax_backward_impl("softmax_backward", grad, y, dim, false);
}

Tensor log_softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim) {
  SL_FORWARD_TO_DEVICE(log_softmax_backward, grad.device(), grad, y, dim);
  return softmax_backward_impl("log_softmax_backward", grad, y, dim, true);
}

}  // namespace shardlab::ops
