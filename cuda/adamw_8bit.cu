// CUDA kernels for 8-bit AdamW: one 256-thread block per 256-element quantization block, the
// dynamic maps in shared memory, absmax by a warp-shuffle reduction, nearest code by binary search;
// plus the plain blockwise quantize / dequantize of the same format.
#include "cuda/adamw_8bit.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>

#include "core/ops/optim_8bit.h"
#include "cuda/adamw_math.cuh"
#include "cuda/device.h"
#include "cuda/dtype_dispatch.cuh"

namespace shardlab::cuda {

namespace {
constexpr int kBlock = 256;  // ops::kQuantBlock8bit: elements per absmax, and threads per CUDA block
static_assert(kBlock == ops::kQuantBlock8bit);

// A map travels by value as a kernel parameter (1 KiB, under the 4 KiB limit): no global state.
struct Map {
  float v[256];
};
Map map_arg(bool is_signed) {
  Map m;
  const auto& host = ops::dynamic_map(is_signed);
  for (int k = 0; k < 256; ++k) m.v[k] = host[k];
  return m;
}

unsigned quant_blocks(int64_t n, const char* op) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  SL_CHECK(blocks <= INT_MAX, op, ": ", n, " elements exceed CUDA's grid limit");
  return static_cast<unsigned>(blocks);
}

// Index of the map entry nearest to x; ties go to the smaller index (as ops::quantize_nearest).
__device__ uint8_t nearest_code(const float* map, float x) {
  int lo = 0, hi = 256;  // first index with map[idx] > x (upper_bound), by binary search
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (map[mid] > x) hi = mid;
    else lo = mid + 1;
  }
  if (lo == 0) return 0;
  if (lo == 256) return 255;
  return static_cast<uint8_t>(x - map[lo - 1] <= map[lo] - x ? lo - 1 : lo);
}

// Max over the block's 256 threads (x >= 0); every thread gets the result. A NaN counts as 0, as in
// the CPU's std::max from 0: an all-NaN block stores absmax 0 there, not NaN.
__device__ float block_max(float x, float* scratch) {
  x = fmaxf(x, 0.0f);
  for (int off = 16; off > 0; off /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  float r = scratch[0];
  for (int w = 1; w < kBlock / 32; ++w) r = fmaxf(r, scratch[w]);
  __syncthreads();  // scratch is reused by the next call
  return r;
}

template <typename T>
__global__ void __launch_bounds__(kBlock)
    adamw_8bit_kernel(T* __restrict__ p, const T* __restrict__ g, uint8_t* __restrict__ mc,
                      uint8_t* __restrict__ vc, float* __restrict__ am, float* __restrict__ av, int64_t n,
                      AdamWCoeffs<acc_t<T>> c, Map smap_arg, Map umap_arg) {
  using S = acc_t<T>;
  __shared__ float smap[256], umap[256], scratch[kBlock / 32];
  const int t = threadIdx.x;
  smap[t] = smap_arg.v[t];
  umap[t] = umap_arg.v[t];
  __syncthreads();
  const int64_t b = blockIdx.x, i = b * kBlock + t;
  const bool live = i < n;
  float m_new = 0.0f, v_new = 0.0f;  // the updated, unquantized state, as f32 (the CPU's mnew/vnew)
  if (live) {
    S m = static_cast<S>(smap[mc[i]] * am[b]);
    S v = static_cast<S>(umap[vc[i]] * av[b]);
    p[i] = from_acc<T>(adamw_update(to_acc(p[i]), to_acc(g[i]), m, v, c));
    m_new = static_cast<float>(m);
    v_new = static_cast<float>(v);
  }
  // Every thread has read am[b] / av[b] above (block_max syncs) before thread 0 overwrites them.
  const float am_new = block_max(fabsf(m_new), scratch);
  const float av_new = block_max(v_new, scratch);
  if (t == 0) {
    am[b] = am_new;
    av[b] = av_new;
  }
  if (live) {
    mc[i] = nearest_code(smap, am_new > 0.0f ? m_new / am_new : 0.0f);
    vc[i] = nearest_code(umap, av_new > 0.0f ? v_new / av_new : 0.0f);
  }
}

__global__ void __launch_bounds__(kBlock)
    quantize_blockwise_kernel(const float* __restrict__ x, uint8_t* __restrict__ codes, float* __restrict__ absmax,
                              int64_t n, Map map_arg) {
  __shared__ float map[256], scratch[kBlock / 32];
  const int t = threadIdx.x;
  map[t] = map_arg.v[t];
  __syncthreads();
  const int64_t b = blockIdx.x, i = b * kBlock + t;
  const bool live = i < n;
  const float xv = live ? x[i] : 0.0f;
  const float amax = block_max(fabsf(xv), scratch);
  if (t == 0) absmax[b] = amax;
  if (live) codes[i] = nearest_code(map, amax > 0.0f ? xv / amax : 0.0f);
}

__global__ void __launch_bounds__(kBlock)
    dequantize_blockwise_kernel(const uint8_t* __restrict__ codes, const float* __restrict__ absmax,
                                float* __restrict__ out, int64_t n, Map map_arg) {
  __shared__ float map[256];
  map[threadIdx.x] = map_arg.v[threadIdx.x];
  __syncthreads();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x;
  if (i < n) out[i] = map[codes[i]] * absmax[i / kBlock];
}
}  // namespace

template <typename T>
void adamw_8bit_step(T* param, const T* grad, uint8_t* m_codes, uint8_t* v_codes, float* absmax_m, float* absmax_v,
                     int64_t n, const ops::AdamWHyper& h, cudaStream_t stream) {
  if (n == 0) return;
  adamw_8bit_kernel<T><<<quant_blocks(n, "adamw_8bit_step"), kBlock, 0, stream>>>(
      param, grad, m_codes, v_codes, absmax_m, absmax_v, n, adamw_coeffs<acc_t<T>>(h), map_arg(true),
      map_arg(false));
  SL_CUDA_CHECK(cudaGetLastError());
}

template void adamw_8bit_step<float>(float*, const float*, uint8_t*, uint8_t*, float*, float*, int64_t,
                                     const ops::AdamWHyper&, cudaStream_t);
template void adamw_8bit_step<double>(double*, const double*, uint8_t*, uint8_t*, float*, float*, int64_t,
                                      const ops::AdamWHyper&, cudaStream_t);
template void adamw_8bit_step<__nv_bfloat16>(__nv_bfloat16*, const __nv_bfloat16*, uint8_t*, uint8_t*, float*,
                                             float*, int64_t, const ops::AdamWHyper&, cudaStream_t);
template void adamw_8bit_step<__half>(__half*, const __half*, uint8_t*, uint8_t*, float*, float*, int64_t,
                                      const ops::AdamWHyper&, cudaStream_t);

void quantize_blockwise(const float* x, uint8_t* codes, float* absmax, int64_t n, bool is_signed,
                        cudaStream_t stream) {
  if (n == 0) return;
  quantize_blockwise_kernel<<<quant_blocks(n, "quantize_blockwise"), kBlock, 0, stream>>>(x, codes, absmax, n,
                                                                                          map_arg(is_signed));
  SL_CUDA_CHECK(cudaGetLastError());
}

void dequantize_blockwise(const uint8_t* codes, const float* absmax, float* out, int64_t n, bool is_signed,
                          cudaStream_t stream) {
  if (n == 0) return;
  dequantize_blockwise_kernel<<<quant_blocks(n, "dequantize_blockwise"), kBlock, 0, stream>>>(codes, absmax, out, n,
                                                                                              map_arg(is_signed));
  SL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace shardlab::cuda
