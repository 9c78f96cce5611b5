// Rotary position embedding on CUDA in Hugging Face's rotate_half convention, the twin of
// core/cpu/rope.cc: a cos/sin table (pos_rows, T, D/2) built in f64 from the host's inv_freq
// (Llama-3 scaling included), then one thread per rotated pair (i, i + D/2) of every head vector.
#include <vector>

#include "core/checks.h"
#include "core/memory_ledger.h"
#include "core/ops/fused.h"
#include "cuda/dtype_dispatch.cuh"
#include "cuda/llama_fused_internal.cuh"
#include "cuda/op_launch.h"

namespace shardlab::cuda {

namespace {

constexpr int kThreads = 256;

// cos_t[r][i] = cos(pos_r * inv_freq[i]), sin_t[r][i] = sign * sin(...) for the table rows
// r = b * T + t (b < pos_rows), angles and their cos/sin in f64 as the CPU kernel computes them
// (an f32 angle would be off by ~1e-3 rad at position 8192), rounded once to A.
template <typename I, typename A>
__global__ void rope_table_kernel(const I* __restrict__ positions, int64_t s0, int64_t s1, int64_t T, int64_t half,
                                  const double* __restrict__ inv_freq, double sign, A* __restrict__ cos_t,
                                  A* __restrict__ sin_t, int64_t n) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n) return;
  const int64_t i = idx % half, r = idx / half;
  const int64_t b = r / T, t = r % T;
  const double angle = static_cast<double>(positions[b * s0 + t * s1]) * inv_freq[i];
  double s, c;
  sincos(angle, &s, &c);
  cos_t[idx] = static_cast<A>(c);
  sin_t[idx] = static_cast<A>(sign * s);
}

// y (B, H, T, D) contiguous from x (B, H, T, D) with strides (sb, sh, st, sd): one thread per
// pair (row, i), row = (b * H + h) * T + t, i < half = D / 2.
template <typename T_>
__global__ void rope_apply_kernel(const T_* __restrict__ x, int64_t sb, int64_t sh, int64_t st, int64_t sd, int64_t H,
                                  int64_t T, int64_t half, bool per_batch, const acc_t<T_>* __restrict__ cos_t,
                                  const acc_t<T_>* __restrict__ sin_t, T_* __restrict__ y, int64_t n_pairs) {
  using A = acc_t<T_>;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_pairs) return;
  const int64_t i = idx % half, row = idx / half;
  const int64_t t = row % T, h = (row / T) % H, b = row / (T * H);
  const T_* xr = x + b * sb + h * sh + t * st;
  const int64_t table = ((per_batch ? b * T : 0) + t) * half + i;
  const A c = cos_t[table], s = sin_t[table];
  const A x1 = to_acc(xr[i * sd]), x2 = to_acc(xr[(i + half) * sd]);
  T_* yr = y + row * 2 * half;
  yr[i] = from_acc<T_>(x1 * c - x2 * s);
  yr[i + half] = from_acc<T_>(x2 * c + x1 * s);
}

// Rotates x by sign * angle into a new contiguous tensor, with core/cpu/rope.cc's checks.
Tensor rope_apply(const char* op, const Tensor& x, const Tensor& positions, const ops::RopeConfig& config,
                  double sign) {
  const Device device = check_cuda_args(op, {x, positions});
  check_float(op, x);
  SL_CHECK(x.dim() == 4, op, ": x must be (B, H, T, D), got shape ", shape_str(x.shape()));
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3);
  SL_CHECK(D % 2 == 0, op, ": head dim D must be even, got x of shape ", shape_str(x.shape()));
  const bool per_batch = positions.dim() == 2;
  SL_CHECK((positions.dim() == 1 && positions.size(0) == T) ||
               (per_batch && positions.size(0) == B && positions.size(1) == T),
           op, ": positions must be (T,) = ", shape_str({T}), " or (B, T) = ", shape_str({B, T}),
           " for x of shape ", shape_str(x.shape()), ", got ", shape_str(positions.shape()));
  Tensor y = Tensor::empty(x.shape(), x.dtype(), device);
  if (x.numel() == 0) return y;
  const int64_t half = D / 2;
  const std::vector<double> inv_freq = ops::rope_inv_freq(config, D);
  const int64_t pos_rows = per_batch ? B : 1;
  const int64_t table_n = pos_rows * T * half;
  const cudaStream_t stream = op_stream(device);

  dispatch_cuda_float(x.dtype(), op, [&]<typename T_>() {
    using A = acc_t<T_>;
    const DType acc_dtype = std::is_same_v<A, double> ? DType::f64 : DType::f32;
    Tensor freq, cos_t, sin_t;
    {
      MemTagScope scratch(MemTag::workspace);
      freq = Tensor::empty({half}, DType::f64, device);
      cos_t = Tensor::empty({pos_rows, T, half}, acc_dtype, device);
      sin_t = Tensor::empty({pos_rows, T, half}, acc_dtype, device);
    }
    // From pageable memory the call returns once the bytes are staged, so the vector may go.
    SL_CUDA_CHECK(cudaMemcpyAsync(freq.raw_data(), inv_freq.data(), inv_freq.size() * sizeof(double),
                                  cudaMemcpyHostToDevice, stream));
    dispatch_index(positions.dtype(), op, [&]<typename I>() {
      const int64_t s0 = per_batch ? positions.stride(0) : 0, s1 = positions.stride(-1);
      rope_table_kernel<I, A><<<grid_1d(table_n, kThreads, op), kThreads, 0, stream>>>(
          static_cast<const I*>(positions.raw_data()), s0, s1, T, half, static_cast<const double*>(freq.raw_data()),
          sign, static_cast<A*>(cos_t.raw_data()), static_cast<A*>(sin_t.raw_data()), table_n);
      SL_CUDA_CHECK(cudaGetLastError());
    });
    const int64_t n_pairs = x.numel() / 2;
    rope_apply_kernel<T_><<<grid_1d(n_pairs, kThreads, op), kThreads, 0, stream>>>(
        static_cast<const T_*>(x.raw_data()), x.stride(0), x.stride(1), x.stride(2), x.stride(3), H, T, half,
        per_batch, static_cast<const A*>(cos_t.raw_data()), static_cast<const A*>(sin_t.raw_data()),
        static_cast<T_*>(y.raw_data()), n_pairs);
    SL_CUDA_CHECK(cudaGetLastError());
  });
  return y;
}

Tensor rope_fwd_cuda(const Tensor& x, const Tensor& positions, const ops::RopeConfig& config) {
  return rope_apply("rope_fwd", x, positions, config, 1.0);
}

// The rotation is orthogonal, so its transpose (the backward) is the rotation by -angle.
Tensor rope_bwd_cuda(const Tensor& dy, const Tensor& positions, const ops::RopeConfig& config) {
  return rope_apply("rope_bwd", dy, positions, config, -1.0);
}

}  // namespace

void register_rope_kernels(DeviceKernels& k) {
  k.rope_fwd = &rope_fwd_cuda;
  k.rope_bwd = &rope_bwd_cuda;
}

}  // namespace shardlab::cuda
