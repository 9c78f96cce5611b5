// RMSNorm over the last dim on the CPU: y = x * rstd * weight with rstd = 1/sqrt(mean(x^2) + eps),
// and its backward. Rows run in parallel; the weight gradient is summed deterministically.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/device_kernels.h"
#include "core/checks.h"
#include "core/cpu/loops.h"
#include "core/ops/fused.h"
#include "core/ops/views.h"
#include "core/trace.h"
#include "core/rms_norm_args.h"

namespace shardlab::ops {

namespace {

// True when rows are worth splitting across threads.
bool parallel_rows(int64_t rows, int64_t d) {
  return rows > 1 && rows * d >= cpu::kParallelGrain && !omp_in_parallel();
}

// The weight gradient is summed over rows in this many fixed chunks (independent of the thread
// count), then the chunk partials are added in chunk order: the result is bit-identical whatever
// OMP_NUM_THREADS is.
constexpr int64_t kWeightGradChunks = 64;

// sum over j < n of term(j) in f64 with 8 independent partial sums: vectorisable (one running sum
// is a serial chain the compiler may not reorder) and still added in a fixed order.
template <typename F>
double lane_sum(int64_t n, F&& term) {
  double acc[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) acc[k] += term(j + k);
  for (; j < n; ++j) acc[0] += term(j);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace

RmsNormOut rms_norm_fwd(const Tensor& x, const Tensor& weight, double eps) {
  SL_FORWARD_TO_DEVICE(rms_norm_fwd, x.device(), x, weight, eps);
  SL_TRACE_OP("rms_norm_fwd", x, weight);
  const char* op = "rms_norm_fwd";
  check_cpu(op, {x, weight});
  const int64_t d = check_rms_args(op, x, weight);
  SL_CHECK(eps >= 0.0, op, ": eps must be >= 0, got ", eps, " for x of shape ", shape_str(x.shape()));
  const int64_t rows = x.numel() / d;
  const Tensor xc = contiguous(x), wc = contiguous(weight);
  const DType stat_dtype = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  RmsNormOut out{Tensor::empty(x.shape(), x.dtype(), x.device()), Tensor::empty({rows}, stat_dtype, x.device())};

  dispatch_float(x.dtype(), op, [&]<typename T>() {
    using A = acc_t<T>;  // f32 for 16-bit floats, f32 for f32, f64 for f64
    const T* xp = xc.data<T>();
    const T* wp = wc.data<T>();
    T* yp = out.y.data<T>();
    A* rp = out.rstd.data<A>();
    // Weights converted once, not per row.
    std::vector<A> w(static_cast<size_t>(d));
    for (int64_t j = 0; j < d; ++j) w[j] = static_cast<A>(wp[j]);
    auto row = [&](int64_t r) {
      const T* xr = xp + r * d;
      T* yr = yp + r * d;
      // Sum of squares in f64: one long sum per row.
      const double ss = lane_sum(d, [&](int64_t j) {
        const double v = static_cast<double>(static_cast<A>(xr[j]));
        return v * v;
      });
      const A rstd = static_cast<A>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
      rp[r] = rstd;
      for (int64_t j = 0; j < d; ++j) yr[j] = static_cast<T>(static_cast<A>(xr[j]) * rstd * w[j]);
    };
    if (parallel_rows(rows, d)) {
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r) row(r);
    } else {
      for (int64_t r = 0; r < rows; ++r) row(r);
    }
  });
  return out;
}

RmsNormGrads rms_norm_bwd(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd) {
  SL_FORWARD_TO_DEVICE(rms_norm_bwd, dy.device(), dy, x, weight, rstd);
  SL_TRACE_OP("rms_norm_bwd", dy, x);
  const char* op = "rms_norm_bwd";
  check_cpu(op, {dy, x, weight, rstd});
  const int64_t d = check_rms_args(op, x, weight);
  check_same_dtype(op, dy, x);
  SL_CHECK(dy.shape() == x.shape(), op, ": dy of shape ", shape_str(dy.shape()), " does not match x of shape ",
           shape_str(x.shape()));
  const int64_t rows = x.numel() / d;
  const DType stat_dtype = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  SL_CHECK(rstd.dtype() == stat_dtype && rstd.dim() == 1 && rstd.size(0) == rows, op, ": rstd must be ", shape_str({rows}),
           " ", dtype_name(stat_dtype), " for x of shape ", shape_str(x.shape()), ", got ",
           dtype_name(rstd.dtype()), " of shape ", shape_str(rstd.shape()));
  const Tensor dyc = contiguous(dy), xc = contiguous(x), wc = contiguous(weight), rc = contiguous(rstd);
  RmsNormGrads grads{Tensor::empty(x.shape(), x.dtype(), x.device()),
                     Tensor::empty(weight.shape(), weight.dtype(), weight.device())};

  dispatch_float(x.dtype(), op, [&]<typename T>() {
    using A = acc_t<T>;
    const T* dyp = dyc.data<T>();
    const T* xp = xc.data<T>();
    const T* wp = wc.data<T>();
    const A* rp = rc.data<A>();
    T* dxp = grads.dx.data<T>();
    std::vector<A> w(static_cast<size_t>(d));
    for (int64_t j = 0; j < d; ++j) w[j] = static_cast<A>(wp[j]);

    const int64_t chunks = std::min(rows, kWeightGradChunks);
    const int64_t chunk_rows = chunks > 0 ? (rows + chunks - 1) / chunks : 0;
    // (chunks, D) partial sums of dy * x * rstd, one row per chunk.
    std::vector<double> partial(static_cast<size_t>(chunks * d), 0.0);

    auto run_chunk = [&](int64_t c) {
      double* dw = partial.data() + c * d;
      const int64_t end = std::min(rows, (c + 1) * chunk_rows);
      for (int64_t r = c * chunk_rows; r < end; ++r) {
        const T* xr = xp + r * d;
        const T* dyr = dyp + r * d;
        T* dxr = dxp + r * d;
        const double rs = static_cast<double>(rp[r]);
        // mean(w * dy * x) over the row, the projection term of the normalisation.
        const double dot = lane_sum(d, [&](int64_t j) {
          return static_cast<double>(w[j] * static_cast<A>(dyr[j])) * static_cast<double>(static_cast<A>(xr[j]));
        });
        const A coef = static_cast<A>(rs * rs * dot / static_cast<double>(d));
        const A rsa = static_cast<A>(rs);
        for (int64_t j = 0; j < d; ++j) {
          const A xv = static_cast<A>(xr[j]), g = static_cast<A>(dyr[j]);
          dxr[j] = static_cast<T>(rsa * (w[j] * g - xv * coef));
          dw[j] += static_cast<double>(g * xv * rsa);
        }
      }
    };
    if (parallel_rows(rows, d) && chunks > 1) {
#pragma omp parallel for schedule(static)
      for (int64_t c = 0; c < chunks; ++c) run_chunk(c);
    } else {
      for (int64_t c = 0; c < chunks; ++c) run_chunk(c);
    }

    // Combine partials column by column, always in chunk order.
    T* dwp = grads.dweight.data<T>();
    auto combine = [&](int64_t j) {
      double s = 0.0;
      for (int64_t c = 0; c < chunks; ++c) s += partial[static_cast<size_t>(c * d + j)];
      dwp[j] = static_cast<T>(static_cast<A>(s));
    };
    if (parallel_rows(chunks, d)) {
#pragma omp parallel for schedule(static)
      for (int64_t j = 0; j < d; ++j) combine(j);
    } else {
      for (int64_t j = 0; j < d; ++j) combine(j);
    }
  });
  return grads;
}

}  // namespace shardlab::ops
