// CUDA cross-entropy over the vocabulary (registered by register_loss_lookup_kernels), with the
// semantics of core/cpu/cross_entropy.cc. Forward: one block per row, one online (max, sum-exp)
// pass over V (no probability matrix), lse and the row loss per row, then one block sums the row
// losses in a fixed order (deterministic). Backward: one block per row recomputes softmax from the
// logits and the saved lse and writes dlogits in one pass.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <limits>
#include <type_traits>

#include "core/ops/views.h"
#include "cuda/block_reduce.cuh"
#include "cuda/dtype_dispatch.cuh"
#include "cuda/online_softmax.cuh"
#include "cuda/reduce_internal.cuh"

namespace shardlab::cuda::reduce_family {

namespace {

using namespace online_softmax;

constexpr int kThreads = 256;

// The loss / lse type: f64 for f64 logits, f32 otherwise (the 16-bit types included).
template <typename T>
using loss_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Per row r (one block): lse[r] = log sum_j exp(x[r, j]) and row_loss[r] = lse[r] - x[r, t[r]]
// (0 for an ignored row), the latter in f64 as on the CPU; with reduction none also
// loss_none[r]. A target neither in [0, V) nor ignore_index is flagged (its row loss stays 0).
template <typename T, typename I>
__global__ void cross_entropy_forward_kernel(const T* logits, int64_t row_stride, int64_t V, const I* targets,
                                             int64_t target_stride, int64_t ignore_index, loss_t<T>* lse,
                                             double* row_loss, loss_t<T>* loss_none, unsigned long long* bad) {
  using A = acc_t<T>;
  const int64_t r = blockIdx.x;
  const T* x = logits + r * row_stride;
  MaxSumExp<A> st = mse_empty<A>();
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) st = mse_push(st, to_acc(x[j]));
  st = block_allreduce(st, MseCombine<A>{}, mse_empty<A>());
  if (threadIdx.x != 0) return;
  const double l = static_cast<double>(st.m) + ::log(static_cast<double>(st.s));
  lse[r] = static_cast<loss_t<T>>(l);
  const int64_t t = static_cast<int64_t>(targets[r * target_stride]);
  double loss = 0.0;
  if (t != ignore_index) {
    if (t < 0 || t >= V) flag_bad_position(bad, r);
    else loss = l - static_cast<double>(to_acc(x[t]));
  }
  row_loss[r] = loss;
  if (loss_none != nullptr) loss_none[r] = static_cast<loss_t<T>>(loss);
}

// One block: count = rows whose target is not ignore_index; with `loss` non-null, *loss = the sum
// of the row losses (divided by count for mean; NaN when count is 0, see NOTE [empty mean] in
// core/cpu/cross_entropy.cc). Thread-strided partials and a fixed tree: deterministic.
template <typename L, typename I>
__global__ void cross_entropy_total_kernel(const double* row_loss, const I* targets, int64_t target_stride, int64_t n,
                                           int64_t ignore_index, bool mean, L* loss, long long* count) {
  double total = 0.0;
  long long counted = 0;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) {
    total += row_loss[r];
    counted += static_cast<int64_t>(targets[r * target_stride]) != ignore_index;
  }
  total = block_allreduce_sum(total);
  counted = block_allreduce_sum(counted);
  if (threadIdx.x != 0) return;
  *count = counted;
  if (loss == nullptr) return;
  if (mean)
    total = counted > 0 ? total / static_cast<double>(counted) : std::numeric_limits<double>::quiet_NaN();
  *loss = static_cast<L>(total);
}

// out[k] = p[k * stride] as f64 (the incoming loss gradient, of any float dtype).
template <typename G>
__global__ void to_double_kernel(const G* p, int64_t stride, int64_t n, double* out) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[k] = static_cast<double>(to_acc(p[k * stride]));
}

// Per row r (one block): dlogits[r, j] = (exp(x[r, j] - lse[r]) - [j == t[r]]) * scale, with
// scale = dloss[r * dloss_stride] / divisor (dloss_stride 0: one scalar for every row); ignored
// rows get zeros. A row whose target is counted sets *counted; a bad target is flagged.
template <typename T, typename I>
__global__ void cross_entropy_backward_kernel(const T* logits, int64_t row_stride, int64_t V, const I* targets,
                                              int64_t target_stride, int64_t ignore_index, const loss_t<T>* lse,
                                              int64_t lse_stride, const double* dloss, int64_t dloss_stride,
                                              double divisor, T* dlogits, unsigned long long* bad, int* counted) {
  using A = acc_t<T>;
  const int64_t r = blockIdx.x;
  T* d = dlogits + r * V;
  const int64_t t = static_cast<int64_t>(targets[r * target_stride]);
  if (t == ignore_index || t < 0 || t >= V) {  // the whole block takes this branch; no barrier here
    if (t != ignore_index && threadIdx.x == 0) flag_bad_position(bad, r);
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) d[j] = from_acc<T>(A(0));
    return;
  }
  if (threadIdx.x == 0) *counted = 1;
  const T* x = logits + r * row_stride;
  const A l = static_cast<A>(lse[r * lse_stride]);
  const A sc = static_cast<A>(dloss[r * dloss_stride] / divisor);
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    A p = exp_acc(to_acc(x[j]) - l);
    if (j == t) p -= A(1);
    d[j] = from_acc<T>(p * sc);
  }
}

// Logits (N, V) float and targets (N,) i32/i64, as the CPU's checked_targets (the values are
// checked on the GPU).
void check_logits_targets(const char* op, const Tensor& logits, const Tensor& targets) {
  check_float(op, logits);
  SL_CHECK(logits.dim() == 2, op, ": logits must be (N, V), got shape ", shape_str(logits.shape()));
  const int64_t n = logits.size(0);
  SL_CHECK(targets.dim() == 1 && targets.size(0) == n, op, ": targets must be (N,) = ", shape_str({n}),
           " for logits of shape ", shape_str(logits.shape()), ", got shape ", shape_str(targets.shape()));
  SL_CHECK(targets.dtype() == DType::i32 || targets.dtype() == DType::i64, op, ": index dtype ",
           dtype_name(targets.dtype()), " is not supported (needs i32 or i64)");
}

// Logits with unit stride along V (a copy only when they lack it); rows may be strided.
Tensor unit_inner_stride(const Tensor& logits) {
  return logits.stride(1) == 1 || logits.size(1) <= 1 ? logits : ops::contiguous(logits);
}

// Throws the CPU's error for the bad target at `row` (read back from the GPU).
template <typename I>
[[noreturn]] void fail_bad_target(const char* op, const I* targets, int64_t target_stride, int64_t row,
                                  const Tensor& logits, int64_t ignore_index, cudaStream_t stream) {
  const int64_t t = static_cast<int64_t>(read_device_element(targets + row * target_stride, stream));
  SL_FAIL(op, ": target ", t, " at row ", row, " is out of range [0, ", logits.size(1), ") and is not ignore_index (",
          ignore_index, ") for logits of shape ", shape_str(logits.shape()));
}

}  // namespace

ops::CrossEntropyOut cross_entropy_fwd(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                       ops::Reduction reduction) {
  const char* op = "cross_entropy_fwd";
  check_on_cuda(op, {logits, targets});
  check_logits_targets(op, logits, targets);
  const int64_t n = logits.size(0), v = logits.size(1);
  const Tensor lg = unit_inner_stride(logits);
  const Device device = logits.device();
  const DType loss_dtype = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  cudaStream_t stream = launch_stream(device);
  ops::CrossEntropyOut out;
  out.lse = Tensor::empty({n}, loss_dtype, device);
  out.loss = Tensor::empty(reduction == ops::Reduction::none ? Shape{n} : Shape{}, loss_dtype, device);
  Tensor row_loss, count;
  {
    MemTagScope scope(MemTag::workspace);
    row_loss = Tensor::empty({n}, DType::f64, device);
    count = Tensor::empty({1}, DType::i64, device);
  }
  BadPositionFlag bad(device, stream);
  dispatch_cuda_float(logits.dtype(), op, [&]<typename T>() {
    using L = loss_t<T>;
    dispatch_index(targets.dtype(), op, [&]<typename I>() {
      const I* tp = static_cast<const I*>(targets.raw_data());
      if (n > 0) {
        cross_entropy_forward_kernel<T, I><<<grid_1d(n, op), kThreads, 0, stream>>>(
            static_cast<const T*>(lg.raw_data()), lg.stride(0), v, tp, targets.stride(0), ignore_index,
            static_cast<L*>(out.lse.raw_data()), static_cast<double*>(row_loss.raw_data()),
            reduction == ops::Reduction::none ? static_cast<L*>(out.loss.raw_data()) : nullptr, bad.device_ptr());
        SL_CUDA_CHECK(cudaGetLastError());
      }
      cross_entropy_total_kernel<L, I><<<1, 1024, 0, stream>>>(
          static_cast<const double*>(row_loss.raw_data()), tp, targets.stride(0), n, ignore_index,
          reduction == ops::Reduction::mean,
          reduction == ops::Reduction::none ? nullptr : static_cast<L*>(out.loss.raw_data()),
          static_cast<long long*>(count.raw_data()));
      SL_CUDA_CHECK(cudaGetLastError());
      // See NOTE [bad-input flags] (reduce_internal.cuh): the count must reach the host, so this
      // op waits for its kernels once.
      long long host_count = 0;
      SL_CUDA_CHECK(cudaMemcpyAsync(&host_count, count.raw_data(), sizeof(host_count), cudaMemcpyDeviceToHost, stream));
      const int64_t bad_row = bad.first_bad();  // synchronizes the stream, so host_count is ready
      if (bad_row >= 0) fail_bad_target(op, tp, targets.stride(0), bad_row, logits, ignore_index, stream);
      out.count = host_count;
    });
  });
  SL_CHECK(v > 0, op, ": the vocabulary dim must be non-empty, got logits of shape ", shape_str(logits.shape()));
  return out;
}

Tensor cross_entropy_bwd(const Tensor& dloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                         int64_t ignore_index, ops::Reduction reduction, int64_t count) {
  const char* op = "cross_entropy_bwd";
  check_on_cuda(op, {dloss, logits, targets, lse});
  check_logits_targets(op, logits, targets);
  const int64_t n = logits.size(0), v = logits.size(1);
  check_float(op, dloss);
  const DType loss_dtype = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  SL_CHECK(lse.dtype() == loss_dtype && lse.dim() == 1 && lse.size(0) == n, op, ": lse must be ", shape_str({n}), " ",
           dtype_name(loss_dtype), " for logits of shape ", shape_str(logits.shape()), ", got ",
           dtype_name(lse.dtype()), " of shape ", shape_str(lse.shape()));
  const bool none = reduction == ops::Reduction::none;
  if (none)
    SL_CHECK(dloss.dim() == 1 && dloss.size(0) == n, op, ": dloss must be ", shape_str({n}),
             " for reduction none and logits of shape ", shape_str(logits.shape()), ", got shape ",
             shape_str(dloss.shape()));
  else
    SL_CHECK(dloss.numel() == 1, op, ": dloss must be a scalar for reduction mean or sum, got shape ",
             shape_str(dloss.shape()), " for logits of shape ", shape_str(logits.shape()));

  const Device device = logits.device();
  Tensor dlogits = Tensor::empty(logits.shape(), logits.dtype(), device);
  if (n == 0) return dlogits;  // no rows: nothing to check or write (the CPU's checks all pass)
  const Tensor lg = unit_inner_stride(logits);
  cudaStream_t stream = launch_stream(device);
  // The scale of a counted row: dloss[r] (none), dloss (sum), dloss / count (mean). A mean with
  // count <= 0 is an error below unless every row is ignored; the divisor then never matters.
  const double divisor = reduction == ops::Reduction::mean && count > 0 ? static_cast<double>(count) : 1.0;
  const int64_t g_n = none ? n : 1;
  Tensor g, counted;
  {
    MemTagScope scope(MemTag::workspace);
    g = Tensor::empty({g_n}, DType::f64, device);
    counted = Tensor::empty({1}, DType::i32, device);
  }
  SL_CUDA_CHECK(cudaMemsetAsync(counted.raw_data(), 0, sizeof(int), stream));
  BadPositionFlag bad(device, stream);
  dispatch_cuda_float(dloss.dtype(), op, [&]<typename G>() {
    to_double_kernel<G><<<grid_for(g_n, kThreads), kThreads, 0, stream>>>(
        static_cast<const G*>(dloss.raw_data()), none ? dloss.stride(0) : 0, g_n, static_cast<double*>(g.raw_data()));
  });
  SL_CUDA_CHECK(cudaGetLastError());
  dispatch_cuda_float(logits.dtype(), op, [&]<typename T>() {
    dispatch_index(targets.dtype(), op, [&]<typename I>() {
      const I* tp = static_cast<const I*>(targets.raw_data());
      cross_entropy_backward_kernel<T, I><<<grid_1d(n, op), kThreads, 0, stream>>>(
          static_cast<const T*>(lg.raw_data()), lg.stride(0), v, tp, targets.stride(0), ignore_index,
          static_cast<const loss_t<T>*>(lse.raw_data()), lse.stride(0), static_cast<const double*>(g.raw_data()),
          none ? 1 : 0, divisor, static_cast<T*>(dlogits.raw_data()), bad.device_ptr(),
          static_cast<int*>(counted.raw_data()));
      SL_CUDA_CHECK(cudaGetLastError());
      // See NOTE [bad-input flags] (reduce_internal.cuh): waits for the stream to report bad targets.
      const int64_t bad_row = bad.first_bad();
      if (bad_row >= 0) fail_bad_target(op, tp, targets.stride(0), bad_row, logits, ignore_index, stream);
    });
  });
  if (reduction == ops::Reduction::mean && count <= 0)
    SL_CHECK(read_device_element(static_cast<const int*>(counted.raw_data()), stream) == 0, op,
             ": count must be positive for reduction mean when some target is not ignore_index, got ", count,
             " for logits of shape ", shape_str(logits.shape()));
  return dlogits;
}

}  // namespace shardlab::cuda::reduce_family
