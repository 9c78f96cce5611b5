// CUDA softmax and log-softmax along one dim, and their backward kernels (registered by
// register_reduce_kernels). The input is made contiguous and seen as (O, R, I) around the dim, as
// in core/cpu/softmax.cc. The last dim (I == 1) is the fast path: a warp per row for short rows, a
// block per row otherwise, each with one online (max, sum-exp) pass and one writing pass. Other
// dims get one thread per line walking stride I (coalesced across neighbouring lines).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <limits>

#include "core/ops/views.h"
#include "cuda/block_reduce.cuh"
#include "cuda/dtype_dispatch.cuh"
#include "cuda/online_softmax.cuh"
#include "cuda/reduce_internal.cuh"
#include "core/reduce_layout.h"

namespace shardlab::cuda::reduce_family {

using ops::LineLayout;
using ops::line_layout;

namespace {

using namespace online_softmax;

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / kWarpSize;
// Rows up to this long get one warp each; longer rows one block each.
constexpr int64_t kWarpRowMax = 1024;

// The row this warp or block owns, its first lane and the lane step; false when a warp has no row.
template <bool kWarpPerRow>
__device__ inline bool row_of_thread(int64_t O, int64_t& row, int& lane, int& width) {
  if constexpr (kWarpPerRow) {
    row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
    lane = static_cast<int>(threadIdx.x) % kWarpSize;
    width = kWarpSize;
    return row < O;
  } else {
    row = blockIdx.x;
    lane = static_cast<int>(threadIdx.x);
    width = static_cast<int>(blockDim.x);
    return true;
  }
}

// Sum over a row's threads: the warp's or the block's.
template <bool kWarpPerRow, typename S, typename Combine>
__device__ inline S row_allreduce(S v, Combine combine, S identity) {
  if constexpr (kWarpPerRow) return warp_allreduce(v, combine);
  else return block_allreduce(v, combine, identity);
}

// y = softmax or log_softmax of each row of a contiguous (O, R).
template <typename T, bool kLog, bool kWarpPerRow>
__global__ void softmax_rows_kernel(const T* x, T* y, int64_t O, int64_t R) {
  using A = acc_t<T>;
  int64_t row;
  int lane, width;
  if (!row_of_thread<kWarpPerRow>(O, row, lane, width)) return;  // whole warps only; no barrier then
  const T* xr = x + row * R;
  T* yr = y + row * R;
  MaxSumExp<A> st = mse_empty<A>();
  for (int64_t r = lane; r < R; r += width) st = mse_push(st, to_acc(xr[r]));
  st = row_allreduce<kWarpPerRow>(st, MseCombine<A>{}, mse_empty<A>());
  if constexpr (kLog) {
    const A shift = st.m + log_acc(st.s);
    for (int64_t r = lane; r < R; r += width) yr[r] = from_acc<T>(to_acc(xr[r]) - shift);
  } else {
    const A inv = A(1) / st.s;
    for (int64_t r = lane; r < R; r += width) yr[r] = from_acc<T>(exp_acc(to_acc(xr[r]) - st.m) * inv);
  }
}

// The same along a non-last dim of a contiguous (O, R, I): one thread per line (o, i).
template <typename T, bool kLog>
__global__ void softmax_lines_kernel(const T* x, T* y, int64_t O, int64_t R, int64_t I) {
  using A = acc_t<T>;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < O * I;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t base = (k / I) * R * I + k % I;
    MaxSumExp<A> st = mse_empty<A>();
    for (int64_t r = 0; r < R; ++r) st = mse_push(st, to_acc(x[base + r * I]));
    if constexpr (kLog) {
      const A shift = st.m + log_acc(st.s);
      for (int64_t r = 0; r < R; ++r) y[base + r * I] = from_acc<T>(to_acc(x[base + r * I]) - shift);
    } else {
      const A inv = A(1) / st.s;
      for (int64_t r = 0; r < R; ++r) y[base + r * I] = from_acc<T>(exp_acc(to_acc(x[base + r * I]) - st.m) * inv);
    }
  }
}

// dx from dy and y per row of a contiguous (O, R):
//   softmax:     dx = y * (dy - sum(dy * y))
//   log_softmax: dx = dy - exp(y) * sum(dy)
template <typename T, bool kLog, bool kWarpPerRow>
__global__ void softmax_backward_rows_kernel(const T* g, const T* y, T* dx, int64_t O, int64_t R) {
  using A = acc_t<T>;
  int64_t row;
  int lane, width;
  if (!row_of_thread<kWarpPerRow>(O, row, lane, width)) return;
  const T* gr = g + row * R;
  const T* yr = y + row * R;
  T* dr = dx + row * R;
  A dot = 0;
  for (int64_t r = lane; r < R; r += width) {
    const A gv = to_acc(gr[r]);
    dot += kLog ? gv : gv * to_acc(yr[r]);
  }
  dot = row_allreduce<kWarpPerRow>(dot, SumCombine{}, A(0));
  for (int64_t r = lane; r < R; r += width) {
    const A gv = to_acc(gr[r]), yv = to_acc(yr[r]);
    dr[r] = from_acc<T>(kLog ? gv - exp_acc(yv) * dot : yv * (gv - dot));
  }
}

template <typename T, bool kLog>
__global__ void softmax_backward_lines_kernel(const T* g, const T* y, T* dx, int64_t O, int64_t R, int64_t I) {
  using A = acc_t<T>;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < O * I;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t base = (k / I) * R * I + k % I;
    A dot = 0;
    for (int64_t r = 0; r < R; ++r) {
      const A gv = to_acc(g[base + r * I]);
      dot += kLog ? gv : gv * to_acc(y[base + r * I]);
    }
    for (int64_t r = 0; r < R; ++r) {
      const A gv = to_acc(g[base + r * I]), yv = to_acc(y[base + r * I]);
      dx[base + r * I] = from_acc<T>(kLog ? gv - exp_acc(yv) * dot : yv * (gv - dot));
    }
  }
}

// Launches the row kernel (I == 1: a warp per row for short rows, else a block per row) or the
// line kernel (I > 1); each callable launches its kernel with the given grid and block size.
template <typename RowWarp, typename RowBlock, typename Lines>
void launch_lines(const LineLayout& L, const char* op, cudaStream_t stream, RowWarp row_warp, RowBlock row_block,
                  Lines lines) {
  if (L.I == 1) {
    if (L.R <= kWarpRowMax) row_warp(grid_1d(ceil_div(L.O, kWarpsPerBlock), op), kThreads);
    else row_block(grid_1d(L.O, op), kThreads);
  } else {
    lines(grid_for(L.O * L.I, kThreads), kThreads);
  }
  SL_CUDA_CHECK(cudaGetLastError());
}

// Shared body of softmax (log = false) and log_softmax (log = true).
template <bool kLog>
Tensor softmax_impl(const char* op, const Tensor& t, int64_t dim) {
  check_on_cuda(op, {t});
  check_float(op, t);
  const int64_t nd = std::max<int64_t>(t.dim(), 1);  // a scalar is one line of one element
  SL_CHECK(dim >= -nd && dim < nd, op, ": dim ", dim, " is out of range for a tensor of shape ", shape_str(t.shape()));
  const int64_t d = dim < 0 ? dim + nd : dim;
  const Tensor x = ops::contiguous(t);
  Tensor y = Tensor::empty(t.shape(), t.dtype(), t.device());
  const LineLayout L = line_layout(t.dim() == 0 ? Shape{1} : t.shape(), d);
  if (L.R == 0 || L.O * L.I == 0) return y;
  cudaStream_t stream = launch_stream(t.device());
  dispatch_cuda_float(t.dtype(), op, [&]<typename T>() {
    const T* xp = static_cast<const T*>(x.raw_data());
    T* yp = static_cast<T*>(y.raw_data());
    launch_lines(
        L, op, stream,
        [&](unsigned grid, int threads) {
          softmax_rows_kernel<T, kLog, true><<<grid, threads, 0, stream>>>(xp, yp, L.O, L.R);
        },
        [&](unsigned grid, int threads) {
          softmax_rows_kernel<T, kLog, false><<<grid, threads, 0, stream>>>(xp, yp, L.O, L.R);
        },
        [&](unsigned grid, int threads) {
          softmax_lines_kernel<T, kLog><<<grid, threads, 0, stream>>>(xp, yp, L.O, L.R, L.I);
        });
  });
  return y;
}

// Shared body of the two backward ops.
template <bool kLog>
Tensor softmax_backward_impl(const char* op, const Tensor& grad, const Tensor& y, int64_t dim) {
  check_on_cuda(op, {grad, y});
  check_same_dtype(op, grad, y);
  check_float(op, y);
  SL_CHECK(grad.shape() == y.shape(), op, ": gradient of shape ", shape_str(grad.shape()),
           " does not match the output of shape ", shape_str(y.shape()));
  const int64_t d = wrap_dim(dim, std::max<int64_t>(y.dim(), 1), op);
  const Tensor g = ops::contiguous(grad), yc = ops::contiguous(y);
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
  const LineLayout L = line_layout(y.dim() == 0 ? Shape{1} : y.shape(), d);
  if (L.R == 0 || L.O * L.I == 0) return dx;
  cudaStream_t stream = launch_stream(y.device());
  dispatch_cuda_float(y.dtype(), op, [&]<typename T>() {
    const T* gp = static_cast<const T*>(g.raw_data());
    const T* yp = static_cast<const T*>(yc.raw_data());
    T* dp = static_cast<T*>(dx.raw_data());
    launch_lines(
        L, op, stream,
        [&](unsigned grid, int threads) {
          softmax_backward_rows_kernel<T, kLog, true><<<grid, threads, 0, stream>>>(gp, yp, dp, L.O, L.R);
        },
        [&](unsigned grid, int threads) {
          softmax_backward_rows_kernel<T, kLog, false><<<grid, threads, 0, stream>>>(gp, yp, dp, L.O, L.R);
        },
        [&](unsigned grid, int threads) {
          softmax_backward_lines_kernel<T, kLog><<<grid, threads, 0, stream>>>(gp, yp, dp, L.O, L.R, L.I);
        });
  });
  return dx;
}

}  // namespace

Tensor softmax(const Tensor& t, int64_t dim) { return softmax_impl<false>("softmax", t, dim); }

Tensor log_softmax(const Tensor& t, int64_t dim) { return softmax_impl<true>("log_softmax", t, dim); }

Tensor softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim) {
  return softmax_backward_impl<false>("softmax_backward", grad, y, dim);
}

Tensor log_softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim) {
  return softmax_backward_impl<true>("log_softmax_backward", grad, y, dim);
}

}  // namespace shardlab::cuda::reduce_family
