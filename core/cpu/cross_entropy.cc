// Cross-entropy over the vocabulary on the CPU: a stable per-row log-sum-exp forward, and a
// backward that recomputes softmax from logits and lse (no (N, V) probability matrix is kept).
//
// NOTE [empty mean]: with reduction mean and every target equal to ignore_index, the loss is
// 0 / 0 = NaN, as in torch.nn.functional.cross_entropy; the gradient is then all zeros.
#include <omp.h>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/device_kernels.h"
#include "core/checks.h"
#include "core/cpu/loops.h"
#include "core/ops/fused.h"
#include "core/ops/views.h"
#include "core/trace.h"

namespace shardlab::ops {

namespace {

// Checks logits (N, V) float and targets (N,) i32/i64, and returns the targets as i64 after
// checking that each is in [0, V) or equal to ignore_index.
std::vector<int64_t> checked_targets(const char* op, const Tensor& logits, const Tensor& targets,
                                     int64_t ignore_index) {
  check_float(op, logits);
  SL_CHECK(logits.dim() == 2, op, ": logits must be (N, V), got shape ", shape_str(logits.shape()));
  const int64_t n = logits.size(0), v = logits.size(1);
  SL_CHECK(targets.dim() == 1 && targets.size(0) == n, op, ": targets must be (N,) = ", shape_str({n}),
           " for logits of shape ", shape_str(logits.shape()), ", got shape ", shape_str(targets.shape()));
  std::vector<int64_t> t(static_cast<size_t>(n));
  dispatch_index(targets.dtype(), op, [&]<typename I>() {
    const I* p = targets.data<I>();
    const int64_t s = targets.stride(0);
    for (int64_t r = 0; r < n; ++r) t[r] = static_cast<int64_t>(p[r * s]);
  });
  for (int64_t r = 0; r < n; ++r)
    SL_CHECK(t[r] == ignore_index || (t[r] >= 0 && t[r] < v), op, ": target ", t[r], " at row ", r,
             " is out of range [0, ", v, ") and is not ignore_index (", ignore_index, ") for logits of shape ",
             shape_str(logits.shape()));
  return t;
}

// Logits with unit stride along V (a copy only when they lack it); rows may be strided.
Tensor unit_inner_stride(const Tensor& logits) {
  return logits.stride(1) == 1 || logits.size(1) <= 1 ? logits : contiguous(logits);
}

bool parallel_rows(int64_t n, int64_t v) { return n > 1 && n * v >= cpu::kParallelGrain && !omp_in_parallel(); }

// Rows are walked in chunks that go through Eigen's SIMD exp (std::exp in a loop stays scalar
// without -ffast-math). Each chunk's exp-sum is a short f32 sum; chunks are added in f64.
constexpr int64_t kChunk = 1024;

template <typename A>
using ConstArrayMap = Eigen::Map<const Eigen::Array<A, Eigen::Dynamic, 1>>;

// The n values at x in the arithmetic type: x itself when it already is, else converted into buf.
template <typename T, typename A = acc_t<T>>
const A* as_acc(const T* x, int64_t n, A* buf) {
  if constexpr (std::is_same_v<T, A>) {
    return x;
  } else {
    for (int64_t k = 0; k < n; ++k) buf[k] = static_cast<A>(x[k]);
    return buf;
  }
}

}  // namespace

CrossEntropyOut cross_entropy_fwd(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                  Reduction reduction) {
  SL_FORWARD_TO_DEVICE(cross_entropy_fwd, logits.device(), logits, targets, ignore_index, reduction);
  SL_TRACE_OP("cross_entropy_fwd", logits, targets);
  const char* op = "cross_entropy_fwd";
  check_cpu(op, {logits, targets});
  const std::vector<int64_t> t = checked_targets(op, logits, targets, ignore_index);
  const int64_t n = logits.size(0), v = logits.size(1);
  SL_CHECK(v > 0, op, ": the vocabulary dim must be non-empty, got logits of shape ", shape_str(logits.shape()));
  const Tensor lg = unit_inner_stride(logits);
  const DType loss_dtype = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  CrossEntropyOut out;
  out.lse = Tensor::empty({n}, loss_dtype, logits.device());
  std::vector<double> row_loss(static_cast<size_t>(n), 0.0);

  dispatch_float(logits.dtype(), op, [&]<typename T>() {
    using A = acc_t<T>;
    using L = std::conditional_t<std::is_same_v<T, double>, double, float>;  // loss / lse type
    const T* base = lg.data<T>();
    const int64_t rs = lg.stride(0);
    L* lse = out.lse.data<L>();
    auto row = [&](int64_t r) {
      const T* x = base + r * rs;
      alignas(64) A buf[kChunk];
      A m = -std::numeric_limits<A>::infinity();
      for (int64_t b = 0; b < v; b += kChunk) {
        const int64_t len = std::min(kChunk, v - b);
        m = std::max(m, ConstArrayMap<A>(as_acc(x + b, len, buf), len).maxCoeff());
      }
      double s = 0.0;
      for (int64_t b = 0; b < v; b += kChunk) {
        const int64_t len = std::min(kChunk, v - b);
        s += static_cast<double>((ConstArrayMap<A>(as_acc(x + b, len, buf), len) - m).exp().sum());
      }
      const double l = static_cast<double>(m) + std::log(s);
      lse[r] = static_cast<L>(l);
      if (t[r] != ignore_index) row_loss[r] = l - static_cast<double>(static_cast<A>(x[t[r]]));
    };
    if (parallel_rows(n, v)) {
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < n; ++r) row(r);
    } else {
      for (int64_t r = 0; r < n; ++r) row(r);
    }
  });

  for (int64_t r = 0; r < n; ++r) out.count += t[r] != ignore_index;
  if (reduction == Reduction::none) {
    out.loss = Tensor::from_vector(row_loss, {n}, loss_dtype);
    return out;
  }
  double total = 0.0;  // summed in row order: deterministic
  for (double l : row_loss) total += l;
  if (reduction == Reduction::mean)
    total = out.count > 0 ? total / static_cast<double>(out.count) : std::numeric_limits<double>::quiet_NaN();
  out.loss = Tensor::scalar(total, loss_dtype);
  return out;
}

Tensor cross_entropy_bwd(const Tensor& dloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                         int64_t ignore_index, Reduction reduction, int64_t count) {
  SL_FORWARD_TO_DEVICE(cross_entropy_bwd, dloss.device(), dloss, logits, targets, lse, ignore_index, reduction, count);
  SL_TRACE_OP("cross_entropy_bwd", logits, targets);
  const char* op = "cross_entropy_bwd";
  check_cpu(op, {dloss, logits, targets, lse});
  const std::vector<int64_t> t = checked_targets(op, logits, targets, ignore_index);
  const int64_t n = logits.size(0), v = logits.size(1);
  check_float(op, dloss);
  const DType loss_dtype = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  SL_CHECK(lse.dtype() == loss_dtype && lse.dim() == 1 && lse.size(0) == n, op, ": lse must be ", shape_str({n}), " ",
           dtype_name(loss_dtype), " for logits of shape ", shape_str(logits.shape()), ", got ",
           dtype_name(lse.dtype()), " of shape ", shape_str(lse.shape()));
  if (reduction == Reduction::none)
    SL_CHECK(dloss.dim() == 1 && dloss.size(0) == n, op, ": dloss must be ", shape_str({n}),
             " for reduction none and logits of shape ", shape_str(logits.shape()), ", got shape ",
             shape_str(dloss.shape()));
  else
    SL_CHECK(dloss.numel() == 1, op, ": dloss must be a scalar for reduction mean or sum, got shape ",
             shape_str(dloss.shape()), " for logits of shape ", shape_str(logits.shape()));

  SL_CHECK(reduction != Reduction::mean || count > 0 ||
               std::all_of(t.begin(), t.end(), [&](int64_t x) { return x == ignore_index; }),
           op, ": count must be positive for reduction mean when some target is not ignore_index, got ", count,
           " for logits of shape ", shape_str(logits.shape()));
  // The gradient scale of each row: dloss[r] for none, dloss (/ count for mean) otherwise.
  std::vector<double> scale(static_cast<size_t>(n), 0.0);
  const std::vector<double> g = dloss.to_double_vector();
  for (int64_t r = 0; r < n; ++r) {
    if (t[r] == ignore_index) continue;
    if (reduction == Reduction::none) scale[r] = g[r];
    else if (reduction == Reduction::sum) scale[r] = g[0];
    else scale[r] = g[0] / static_cast<double>(count);  // count >= 1 here: row r is counted
  }
  const std::vector<double> lse_v = lse.to_double_vector();

  const Tensor lg = unit_inner_stride(logits);
  Tensor dlogits = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
  dispatch_float(logits.dtype(), op, [&]<typename T>() {
    using A = acc_t<T>;
    const T* base = lg.data<T>();
    const int64_t rs = lg.stride(0);
    T* dp = dlogits.data<T>();
    auto row = [&](int64_t r) {
      T* d = dp + r * v;
      if (t[r] == ignore_index) {
        for (int64_t j = 0; j < v; ++j) d[j] = T(0);
        return;
      }
      const T* x = base + r * rs;
      const A l = static_cast<A>(lse_v[r]), sc = static_cast<A>(scale[r]);
      alignas(64) A buf[kChunk], out[kChunk];
      for (int64_t b = 0; b < v; b += kChunk) {
        const int64_t len = std::min(kChunk, v - b);
        // f32/f64 write straight into dlogits; 16-bit types go through `out` and round once.
        A* dst = std::is_same_v<T, A> ? reinterpret_cast<A*>(d + b) : out;
        Eigen::Map<Eigen::Array<A, Eigen::Dynamic, 1>>(dst, len) =
            (ConstArrayMap<A>(as_acc(x + b, len, buf), len) - l).exp() * sc;
        if constexpr (!std::is_same_v<T, A>)
          for (int64_t k = 0; k < len; ++k) d[b + k] = static_cast<T>(out[k]);
      }
      d[t[r]] = static_cast<T>((std::exp(static_cast<A>(x[t[r]]) - l) - A(1)) * sc);
    };
    if (parallel_rows(n, v)) {
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < n; ++r) row(r);
    } else {
      for (int64_t r = 0; r < n; ++r) row(r);
    }
  });
  return dlogits;
}

}  // namespace shardlab::ops
