// CPU reductions: sum, mean, max/argmax and sum_to. Every reduction is brought to one layout,
// a contiguous (O, R, I) block reduced over R, so one pair of kernels (rows when I == 1,
// columns otherwise) serves any set of dims without per-element index arithmetic.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/device_kernels.h"
#include "core/checks.h"
#include "core/cpu/loops.h"
#include "core/ops/reduce.h"
#include "core/ops/views.h"
#include "core/strided.h"
#include "core/reduce_layout.h"

namespace shardlab::ops {

namespace {

// The accumulator of a sum: f32 sums in f64 (long rows lose digits in f32), 16-bit floats in f32,
// every integer type in i64 (the result dtype of an integer sum).
template <typename T> struct SumAccT { using type = int64_t; };
template <> struct SumAccT<float> { using type = double; };
template <> struct SumAccT<double> { using type = double; };
template <> struct SumAccT<bf16_t> { using type = float; };
template <> struct SumAccT<f16_t> { using type = float; };
template <typename T> using sum_acc_t = typename SumAccT<T>::type;

// Columns handled by one task of a column reduction (the accumulators stay in L1).
constexpr int64_t kColumnChunk = 1024;
// NOTE [deterministic splits]: when a reduction has fewer than kFewTasks independent outputs
// (or column chunks), the reduced extent is also split into partial sums, so that threads have
// work; the partials are combined in a fixed order. Every split depends only on the shape, never
// on the thread count, so results are bit-identical whatever OMP_NUM_THREADS is.
constexpr int64_t kFewTasks = 16;
// Elements of one partial sum of a split row.
constexpr int64_t kRowChunk = 16384;
// Most segments a column reduction's rows are split into, and the fewest rows per segment.
constexpr int64_t kMaxSegments = 64;
constexpr int64_t kMinSegmentRows = 256;

// Sum of n contiguous elements in Acc, four interleaved accumulators (the order is fixed, so the
// result is deterministic, and the loop is not one long dependency chain).
template <typename Acc, typename T>
Acc row_sum(const T* p, int64_t n) {
  Acc a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a0 += static_cast<Acc>(p[i]);
    a1 += static_cast<Acc>(p[i + 1]);
    a2 += static_cast<Acc>(p[i + 2]);
    a3 += static_cast<Acc>(p[i + 3]);
  }
  for (; i < n; ++i) a0 += static_cast<Acc>(p[i]);
  return (a0 + a1) + (a2 + a3);
}

// out[o, i] = scale * sum_r in[o, r, i], stored as Out.
template <typename T, typename Out>
void sum_kernel(const T* in, Out* out, int64_t O, int64_t R, int64_t I, double scale) {
  using Acc = sum_acc_t<T>;
  const bool parallel = O * R * I >= cpu::kParallelGrain && !omp_in_parallel();
  auto store = [&](Acc acc) -> Out {
    if constexpr (std::is_integral_v<Acc>) return static_cast<Out>(acc);
    else return convert<Out>(static_cast<Acc>(acc * static_cast<Acc>(scale)));
  };
  if (I == 1 && O < kFewTasks && R > kRowChunk) {
    // Few long rows: fixed-size partial sums in parallel, combined in order per row.
    const int64_t chunks = (R + kRowChunk - 1) / kRowChunk;
    std::vector<Acc> partial(static_cast<size_t>(O * chunks));
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t task = 0; task < O * chunks; ++task) {
      const int64_t o = task / chunks, c = task % chunks;
      partial[task] = row_sum<Acc>(in + o * R + c * kRowChunk, std::min(kRowChunk, R - c * kRowChunk));
    }
    for (int64_t o = 0; o < O; ++o) {
      Acc acc = 0;
      for (int64_t c = 0; c < chunks; ++c) acc += partial[o * chunks + c];
      out[o] = store(acc);
    }
  } else if (I == 1) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t o = 0; o < O; ++o) out[o] = store(row_sum<Acc>(in + o * R, R));
  } else {
    // Columns: task (o, chunk, segment) sums rows [r0, r1) of columns [i0, i0 + n) of block o.
    const int64_t chunks = (I + kColumnChunk - 1) / kColumnChunk;
    const int64_t segments = O * chunks < kFewTasks ? std::clamp<int64_t>(R / kMinSegmentRows, 1, kMaxSegments) : 1;
    const int64_t seg_rows = (R + segments - 1) / segments;
    const int64_t width = std::min(kColumnChunk, I);  // row length of one partial
    std::vector<Acc> partial(segments > 1 ? static_cast<size_t>(O * chunks * segments * width) : 0);
#pragma omp parallel for schedule(static) if (parallel && O * chunks * segments > 1)
    for (int64_t task = 0; task < O * chunks * segments; ++task) {
      const int64_t seg = task % segments, oc = task / segments;
      const int64_t o = oc / chunks, i0 = (oc % chunks) * kColumnChunk;
      const int64_t n = std::min(kColumnChunk, I - i0);
      const int64_t r0 = std::min(R, seg * seg_rows), r1 = std::min(R, r0 + seg_rows);
      Acc local[kColumnChunk];
      Acc* acc = segments > 1 ? partial.data() + task * width : local;
      std::fill(acc, acc + n, Acc(0));
      for (int64_t r = r0; r < r1; ++r) {
        const T* p = in + (o * R + r) * I + i0;
        for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<Acc>(p[i]);
      }
      if (segments == 1)
        for (int64_t i = 0; i < n; ++i) out[o * I + i0 + i] = store(acc[i]);
    }
    if (segments > 1) {
      for (int64_t oc = 0; oc < O * chunks; ++oc) {
        const int64_t o = oc / chunks, i0 = (oc % chunks) * kColumnChunk;
        const int64_t n = std::min(kColumnChunk, I - i0);
        for (int64_t i = 0; i < n; ++i) {
          Acc acc = 0;
          for (int64_t seg = 0; seg < segments; ++seg) acc += partial[(oc * segments + seg) * width + i];
          out[o * I + i0 + i] = store(acc);
        }
      }
    }
  }
}

// Reads one element as its arithmetic type (16-bit floats as f32).
template <typename T>
inline acc_t<T> load(const T* p) { return static_cast<acc_t<T>>(*p); }

// `v` beats the best so far: larger, or NaN (a NaN anywhere makes the max NaN, like torch).
template <typename A>
inline bool beats(A v, A best) {
  if constexpr (std::is_floating_point_v<A>) return v > best || (std::isnan(v) && !std::isnan(best));
  else return v > best;
}

// values[o, i] = max_r in[o, r, i] and its first index r; either output may be null.
template <typename T>
void max_kernel(const T* in, T* values, int64_t* indices, int64_t O, int64_t R, int64_t I) {
  using A = acc_t<T>;
  const bool parallel = O * R * I >= cpu::kParallelGrain && !omp_in_parallel();
  if (I == 1) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t o = 0; o < O; ++o) {
      const T* p = in + o * R;
      A best = load(p);
      int64_t arg = 0;
      for (int64_t r = 1; r < R; ++r) {
        A v = load(p + r);
        if (beats(v, best)) { best = v; arg = r; }
      }
      if (values) values[o] = p[arg];
      if (indices) indices[o] = arg;
    }
    return;
  }
  const int64_t chunks = (I + kColumnChunk - 1) / kColumnChunk;
#pragma omp parallel for schedule(static) if (parallel && O * chunks > 1)
  for (int64_t task = 0; task < O * chunks; ++task) {
    const int64_t o = task / chunks, i0 = (task % chunks) * kColumnChunk;
    const int64_t n = std::min(kColumnChunk, I - i0);
    A best[kColumnChunk];
    int64_t arg[kColumnChunk];
    const T* base = in + o * R * I + i0;
    for (int64_t i = 0; i < n; ++i) { best[i] = load(base + i); arg[i] = 0; }
    for (int64_t r = 1; r < R; ++r) {
      const T* p = base + r * I;
      for (int64_t i = 0; i < n; ++i) {
        A v = load(p + i);
        if (beats(v, best[i])) { best[i] = v; arg[i] = r; }
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      if (values) values[o * I + i0 + i] = base[arg[i] * I + i];
      if (indices) indices[o * I + i0 + i] = arg[i];
    }
  }
}

// Shared body of sum and mean: `mean` divides by the reduced count before the single rounding.
Tensor sum_or_mean(const char* op, const Tensor& t, const std::vector<int64_t>& dims, bool keepdim, bool mean) {
  check_cpu(op, {t});
  if (mean) check_float(op, t);
  std::vector<bool> mask = reduce_mask(t, dims, op);
  ReduceLayout L = make_layout(t, mask);
  const bool integral = !is_floating(t.dtype());
  Tensor out = Tensor::empty(L.keep_shape, integral ? DType::i64 : t.dtype(), t.device());
  const double scale = mean ? 1.0 / static_cast<double>(L.R) : 1.0;
  dispatch_numeric(t.dtype(), op, [&]<typename T>() {
    const T* in = L.src.template data<T>();
    if constexpr (std::is_integral_v<T>) sum_kernel<T, int64_t>(in, out.data<int64_t>(), L.O, L.R, L.I, scale);
    else sum_kernel<T, T>(in, out.data<T>(), L.O, L.R, L.I, scale);
  });
  return view(out, output_shape(t, mask, keepdim));
}

MaxResult max_impl(const char* op, const Tensor& t, int64_t dim, bool keepdim, bool want_values) {
  check_cpu(op, {t});
  std::vector<bool> mask = reduce_mask(t, {dim}, op);
  ReduceLayout L = make_layout(t, mask);
  SL_CHECK(L.R > 0, op, ": cannot reduce over dim ", dim, " of size 0 in a tensor of shape ", shape_str(t.shape()));
  MaxResult res;
  res.indices = Tensor::empty(L.keep_shape, DType::i64, t.device());
  if (want_values) res.values = Tensor::empty(L.keep_shape, t.dtype(), t.device());
  dispatch_numeric(t.dtype(), op, [&]<typename T>() {
    max_kernel<T>(L.src.template data<T>(), want_values ? res.values.template data<T>() : nullptr,
                  res.indices.data<int64_t>(), L.O, L.R, L.I);
  });
  Shape shape = output_shape(t, mask, keepdim);
  res.indices = view(res.indices, shape);
  if (want_values) res.values = view(res.values, shape);
  return res;
}

}  // namespace

Tensor sum(const Tensor& t, const std::vector<int64_t>& dims, bool keepdim) {
  SL_FORWARD_TO_DEVICE(sum, t.device(), t, dims, keepdim);
  return sum_or_mean("sum", t, dims, keepdim, false);
}

Tensor mean(const Tensor& t, const std::vector<int64_t>& dims, bool keepdim) {
  SL_FORWARD_TO_DEVICE(mean, t.device(), t, dims, keepdim);
  return sum_or_mean("mean", t, dims, keepdim, true);
}

MaxResult max(const Tensor& t, int64_t dim, bool keepdim) {
  SL_FORWARD_TO_DEVICE(max, t.device(), t, dim, keepdim); return max_impl("max", t, dim, keepdim, true); }

Tensor argmax(const Tensor& t, int64_t dim, bool keepdim) {
  SL_FORWARD_TO_DEVICE(argmax, t.device(), t, dim, keepdim);
  return max_impl("argmax", t, dim, keepdim, false).indices;
}

Tensor max_backward(const Tensor& grad, const Tensor& indices, const Shape& input_shape, int64_t dim, bool keepdim) {
  SL_FORWARD_TO_DEVICE(max_backward, grad.device(), grad, indices, input_shape, dim, keepdim);
  const char* op = "max_backward";
  check_cpu(op, {grad, indices});
  check_float(op, grad);
  SL_CHECK(indices.dtype() == DType::i64, op, ": indices must be i64, got ", dtype_name(indices.dtype()));
  const int64_t nd = static_cast<int64_t>(input_shape.size());
  const int64_t d = nd == 0 ? 0 : wrap_dim(dim, nd, op);
  Shape reduced = input_shape;
  if (nd > 0) reduced[d] = 1;
  Tensor g = keepdim || nd == 0 ? grad : unsqueeze(grad, d);
  Tensor idx = keepdim || nd == 0 ? indices : unsqueeze(indices, d);
  SL_CHECK(g.shape() == reduced && idx.shape() == reduced, op, ": gradient of shape ", shape_str(grad.shape()),
           " and indices of shape ", shape_str(indices.shape()), " do not fit an input of shape ",
           shape_str(input_shape), " reduced over dim ", dim);
  g = contiguous(g);
  idx = contiguous(idx);
  Tensor out = Tensor::zeros(input_shape, grad.dtype(), grad.device());
  int64_t O = 1, R = 1, I = 1;
  for (int64_t k = 0; k < nd; ++k) (k < d ? O : k == d ? R : I) *= input_shape[k];
  dispatch_float(grad.dtype(), op, [&]<typename T>() {
    const T* gp = g.data<T>();
    const int64_t* ip = idx.data<int64_t>();
    T* op_ = out.data<T>();
    // Checked before the parallel loop: an exception must not escape an OpenMP region.
    for (int64_t k = 0; k < O * I; ++k)
      SL_CHECK(ip[k] >= 0 && ip[k] < R, op, ": index ", ip[k], " is out of range for dim ", dim, " of size ", R);
#pragma omp parallel for schedule(static) if (O * I >= cpu::kParallelGrain && !omp_in_parallel())
    for (int64_t k = 0; k < O * I; ++k) op_[(k / I * R + ip[k]) * I + k % I] = gp[k];
  });
  return out;
}

Tensor sum_to(const Tensor& t, const Shape& shape) {
  SL_CHECK(t.defined(), "sum_to: undefined tensor");  // built from sum: runs on any device
  const int64_t nd = t.dim(), target = static_cast<int64_t>(shape.size());
  bool ok = target <= nd;
  std::vector<int64_t> dims;
  const int64_t lead = nd - target;
  for (int64_t d = 0; d < lead && ok; ++d) dims.push_back(d);
  for (int64_t d = 0; d < target && ok; ++d) {
    const int64_t have = t.shape()[lead + d];
    if (shape[d] == have) continue;
    if (shape[d] == 1) dims.push_back(lead + d);
    else ok = false;
  }
  SL_CHECK(ok, "sum_to: a tensor of shape ", shape_str(t.shape()), " is not a broadcast of shape ",
           shape_str(shape));
  if (dims.empty()) return alias(t);
  Tensor out = sum(t, dims, true);
  if (out.dtype() != t.dtype()) out = to_dtype(out, t.dtype());  // integer sums come back as i64
  return view(out, shape);
}

}  // namespace shardlab::ops
