// RMSNorm over the last dim on CUDA, the twin of core/cpu/rms_norm.cc. Forward: one block per row.
// Backward: dx per row, and the weight gradient summed over a fixed partition of the rows (chunk
// partials, then a second kernel adds them in chunk order): bit-identical run to run, no atomics.
#include <algorithm>

#include "core/checks.h"
#include "core/memory_ledger.h"
#include "core/ops/fused.h"
#include "core/ops/views.h"
#include "cuda/dtype_dispatch.cuh"
#include "cuda/llama_fused_internal.cuh"
#include "cuda/op_launch.h"
#include "core/rms_norm_args.h"

namespace shardlab::cuda {

using ops::check_rms_args;

namespace {

// The weight gradient is summed over at most this many row chunks; the partition depends only on
// the number of rows, so the result does not depend on the GPU either.
constexpr int64_t kWeightGradChunks = 512;
// Per-block column accumulators of the backward live in shared memory up to this size (under the
// 48 KiB a block gets without opting in, with room for the static scratch), else in the block's
// row of the global partial buffer (L2-resident for the chunk's duration).
constexpr int64_t kSharedAccBytes = 40 * 1024;

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result,
// added in the same order by all of them. `scratch` holds 32 values.
template <typename A>
__device__ A block_sum(A x, A* scratch) {
  for (int off = 16; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // a previous call may still be reading scratch
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  A r = scratch[0];
  for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w) r += scratch[w];
  return r;
}

// x, y (rows, d) contiguous; weight (d,); rstd (rows,). Thread t handles packs t, t + blockDim, ...
template <typename T, int V>
__global__ void rms_norm_fwd_kernel(const T* __restrict__ x, const T* __restrict__ weight, T* __restrict__ y,
                                    acc_t<T>* __restrict__ rstd, int64_t d, double eps) {
  using A = acc_t<T>;
  using P = Pack<T, V>;
  __shared__ A scratch[32];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * d;
  T* yr = y + row * d;
  A ss = 0;
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * V; j < d; j += static_cast<int64_t>(blockDim.x) * V) {
    const P xp = *reinterpret_cast<const P*>(xr + j);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const A v = to_acc(xp.v[k]);
      ss += v * v;
    }
  }
  ss = block_sum(ss, scratch);
  // As the CPU kernel: the mean and the reciprocal square root in f64, rounded once.
  const A rs = static_cast<A>(1.0 / sqrt(static_cast<double>(ss) / static_cast<double>(d) + eps));
  if (threadIdx.x == 0) rstd[row] = rs;
  for (int64_t j = static_cast<int64_t>(threadIdx.x) * V; j < d; j += static_cast<int64_t>(blockDim.x) * V) {
    const P xp = *reinterpret_cast<const P*>(xr + j);
    const P wp = *reinterpret_cast<const P*>(weight + j);
    P yp;
#pragma unroll
    for (int k = 0; k < V; ++k) yp.v[k] = from_acc<T>(to_acc(xp.v[k]) * rs * to_acc(wp.v[k]));
    *reinterpret_cast<P*>(yr + j) = yp;
  }
}

// Block c handles rows [c * chunk_rows, min(rows, (c + 1) * chunk_rows)): dx for each, and the
// chunk's column sums of dy * x * rstd into partial (chunks, d). Each thread owns the same
// columns for every row, so its accumulators (shared memory, or the block's partial row in global
// memory when d is large) need no synchronization.
template <typename T, int V>
__global__ void rms_norm_bwd_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ weight,
                                    const acc_t<T>* __restrict__ rstd, T* __restrict__ dx,
                                    acc_t<T>* __restrict__ partial, int64_t rows, int64_t d, int64_t chunk_rows,
                                    bool shared_acc) {
  using A = acc_t<T>;
  using P = Pack<T, V>;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  __shared__ A scratch[32];
  A* acc = shared_acc ? reinterpret_cast<A*>(shared_bytes) : partial + static_cast<int64_t>(blockIdx.x) * d;
  const int64_t first = static_cast<int64_t>(threadIdx.x) * V, step = static_cast<int64_t>(blockDim.x) * V;
  for (int64_t j = first; j < d; j += step)
#pragma unroll
    for (int k = 0; k < V; ++k) acc[j + k] = 0;

  const int64_t begin = static_cast<int64_t>(blockIdx.x) * chunk_rows;
  const int64_t end = begin + chunk_rows < rows ? begin + chunk_rows : rows;
  for (int64_t r = begin; r < end; ++r) {
    const T* dyr = dy + r * d;
    const T* xr = x + r * d;
    T* dxr = dx + r * d;
    const A rs = rstd[r];
    // sum(w * dy * x) over the row: the projection term of the normalisation.
    A dot = 0;
    for (int64_t j = first; j < d; j += step) {
      const P gp = *reinterpret_cast<const P*>(dyr + j);
      const P xp = *reinterpret_cast<const P*>(xr + j);
      const P wp = *reinterpret_cast<const P*>(weight + j);
#pragma unroll
      for (int k = 0; k < V; ++k) dot += to_acc(wp.v[k]) * to_acc(gp.v[k]) * to_acc(xp.v[k]);
    }
    dot = block_sum(dot, scratch);
    const double rsd = static_cast<double>(rs);
    const A coef = static_cast<A>(rsd * rsd * static_cast<double>(dot) / static_cast<double>(d));
    for (int64_t j = first; j < d; j += step) {
      const P gp = *reinterpret_cast<const P*>(dyr + j);
      const P xp = *reinterpret_cast<const P*>(xr + j);
      const P wp = *reinterpret_cast<const P*>(weight + j);
      P out;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A g = to_acc(gp.v[k]), xv = to_acc(xp.v[k]);
        out.v[k] = from_acc<T>(rs * (to_acc(wp.v[k]) * g - xv * coef));
        acc[j + k] += g * xv * rs;
      }
      *reinterpret_cast<P*>(dxr + j) = out;
    }
  }
  if (shared_acc) {
    A* out = partial + static_cast<int64_t>(blockIdx.x) * d;
    for (int64_t j = first; j < d; j += step)
#pragma unroll
      for (int k = 0; k < V; ++k) out[j + k] = acc[j + k];
  }
}

// dweight[j] = sum over chunks c, in order, of partial[c][j], in f64 (as the CPU combine).
template <typename T>
__global__ void rms_norm_dweight_kernel(const acc_t<T>* __restrict__ partial, int64_t chunks, int64_t d,
                                        T* __restrict__ dweight) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= d) return;
  double s = 0.0;
  for (int64_t c = 0; c < chunks; ++c) s += static_cast<double>(partial[c * d + j]);
  dweight[j] = from_acc<T>(static_cast<acc_t<T>>(s));
}

// Threads per row: enough for one pack each up to 512, a multiple of 32.
int threads_for_row(int64_t d, int v) {
  const int64_t packs = ceil_div(d, v);
  return static_cast<int>(std::clamp<int64_t>(ceil_div(packs, 32) * 32, 32, 512));
}


// Whether every pointer allows V-wide loads of rows of length d.
template <typename T>
bool can_vectorize(int64_t d, std::initializer_list<const void*> ptrs) {
  if (d % kPackWidth<T> != 0) return false;
  for (const void* p : ptrs)
    if (!aligned16(p)) return false;
  return true;
}

ops::RmsNormOut rms_norm_fwd_cuda(const Tensor& x, const Tensor& weight, double eps) {
  const char* op = "rms_norm_fwd";
  const Device device = check_cuda_args(op, {x, weight});
  const int64_t d = check_rms_args(op, x, weight);
  SL_CHECK(eps >= 0.0, op, ": eps must be >= 0, got ", eps, " for x of shape ", shape_str(x.shape()));
  const int64_t rows = x.numel() / d;
  const Tensor xc = ops::contiguous(x), wc = ops::contiguous(weight);
  const DType stat_dtype = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  ops::RmsNormOut out{Tensor::empty(x.shape(), x.dtype(), device), Tensor::empty({rows}, stat_dtype, device)};
  if (rows == 0) return out;
  SL_CHECK(rows <= INT_MAX, op, ": ", rows, " rows exceed CUDA's grid limit");
  const cudaStream_t stream = op_stream(device);
  dispatch_cuda_float(x.dtype(), op, [&]<typename T>() {
    using A = acc_t<T>;
    const T* xp = static_cast<const T*>(xc.raw_data());
    const T* wp = static_cast<const T*>(wc.raw_data());
    T* yp = static_cast<T*>(out.y.raw_data());
    A* rp = static_cast<A*>(out.rstd.raw_data());
    const unsigned grid = static_cast<unsigned>(rows);
    if (can_vectorize<T>(d, {xp, wp, yp})) {
      constexpr int V = kPackWidth<T>;
      rms_norm_fwd_kernel<T, V><<<grid, threads_for_row(d, V), 0, stream>>>(xp, wp, yp, rp, d, eps);
    } else {
      rms_norm_fwd_kernel<T, 1><<<grid, threads_for_row(d, 1), 0, stream>>>(xp, wp, yp, rp, d, eps);
    }
    SL_CUDA_CHECK(cudaGetLastError());
  });
  return out;
}

ops::RmsNormGrads rms_norm_bwd_cuda(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd) {
  const char* op = "rms_norm_bwd";
  const Device device = check_cuda_args(op, {dy, x, weight, rstd});
  const int64_t d = check_rms_args(op, x, weight);
  check_same_dtype(op, dy, x);
  SL_CHECK(dy.shape() == x.shape(), op, ": dy of shape ", shape_str(dy.shape()), " does not match x of shape ",
           shape_str(x.shape()));
  const int64_t rows = x.numel() / d;
  const DType stat_dtype = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  SL_CHECK(rstd.dtype() == stat_dtype && rstd.dim() == 1 && rstd.size(0) == rows, op, ": rstd must be ",
           shape_str({rows}), " ", dtype_name(stat_dtype), " for x of shape ", shape_str(x.shape()), ", got ",
           dtype_name(rstd.dtype()), " of shape ", shape_str(rstd.shape()));
  const Tensor dyc = ops::contiguous(dy), xc = ops::contiguous(x), wc = ops::contiguous(weight),
               rc = ops::contiguous(rstd);
  ops::RmsNormGrads grads{Tensor::empty(x.shape(), x.dtype(), device),
                          Tensor::empty(weight.shape(), weight.dtype(), device)};
  SL_CHECK(rows <= INT_MAX, op, ": ", rows, " rows exceed CUDA's grid limit");
  const int64_t chunks = std::min(rows, kWeightGradChunks);
  const int64_t chunk_rows = chunks > 0 ? ceil_div(rows, chunks) : 0;
  const cudaStream_t stream = op_stream(device);
  dispatch_cuda_float(x.dtype(), op, [&]<typename T>() {
    using A = acc_t<T>;
    Tensor partial;  // (chunks, d) column sums per chunk
    {
      MemTagScope scratch(MemTag::workspace);
      partial = Tensor::empty({chunks, d}, stat_dtype, device);
    }
    A* pp = static_cast<A*>(partial.raw_data());
    if (chunks > 0) {
      const T* gp = static_cast<const T*>(dyc.raw_data());
      const T* xp = static_cast<const T*>(xc.raw_data());
      const T* wp = static_cast<const T*>(wc.raw_data());
      const A* rp = static_cast<const A*>(rc.raw_data());
      T* dxp = static_cast<T*>(grads.dx.raw_data());
      const int64_t acc_bytes = d * static_cast<int64_t>(sizeof(A));
      const bool shared_acc = acc_bytes <= kSharedAccBytes;
      const size_t smem = shared_acc ? static_cast<size_t>(acc_bytes) : 0;
      const unsigned grid = static_cast<unsigned>(chunks);
      if (can_vectorize<T>(d, {gp, xp, wp, dxp})) {
        constexpr int V = kPackWidth<T>;
        rms_norm_bwd_kernel<T, V><<<grid, threads_for_row(d, V), smem, stream>>>(gp, xp, wp, rp, dxp, pp, rows, d,
                                                                                 chunk_rows, shared_acc);
      } else {
        rms_norm_bwd_kernel<T, 1><<<grid, threads_for_row(d, 1), smem, stream>>>(gp, xp, wp, rp, dxp, pp, rows, d,
                                                                                 chunk_rows, shared_acc);
      }
      SL_CUDA_CHECK(cudaGetLastError());
    }
    // With no rows the sum over zero chunks writes zeros, as the CPU kernel does.
    constexpr int kThreads = 256;
    rms_norm_dweight_kernel<T><<<grid_1d(d, kThreads, op), kThreads, 0, stream>>>(
        pp, chunks, d, static_cast<T*>(grads.dweight.raw_data()));
    SL_CUDA_CHECK(cudaGetLastError());
  });
  return grads;
}

}  // namespace

void register_rms_norm_kernels(DeviceKernels& k) {
  k.rms_norm_fwd = &rms_norm_fwd_cuda;
  k.rms_norm_bwd = &rms_norm_bwd_cuda;
}

}  // namespace shardlab::cuda
