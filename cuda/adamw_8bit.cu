// CUDA kernel for the 8-bit AdamW step: one 256-thread block per 256-element quantization block,
// maps in shared memory, absmax by a warp-shuffle reduction, nearest code by binary search.
#include "cuda/adamw_8bit.h"

#include <cmath>

#include "cuda/device.h"

namespace shardlab::cuda {

namespace {
constexpr int kBlock = 256;  // ops::kQuantBlock8bit: elements per absmax, and threads per CUDA block

// Both maps travel by value as a kernel parameter (2 KiB, under the 4 KiB limit): no global state.
struct Maps {
  float s[256];
  float u[256];
};

struct Coeffs {
  float b1, b2, decay, step_size, inv_bc2_sqrt, eps;
};

// Index of the map entry nearest to x; ties go to the smaller index (as quantize_nearest).
__device__ uint8_t nearest_code(const float* map, float x) {
  int lo = 0, hi = 256;  // first index with map[idx] > x, by binary search
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (map[mid] > x) hi = mid; else lo = mid + 1;
  }
  if (lo == 0) return 0;
  if (lo == 256) return 255;
  return static_cast<uint8_t>(x - map[lo - 1] <= map[lo] - x ? lo - 1 : lo);
}

// Max over the block's 256 threads; every thread gets the result.
__device__ float block_max(float x, float* scratch) {
  for (int off = 16; off > 0; off /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, off));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  float r = scratch[0];
  for (int w = 1; w < kBlock / 32; ++w) r = fmaxf(r, scratch[w]);
  __syncthreads();  // scratch is reused by the next call
  return r;
}

__global__ void __launch_bounds__(kBlock)
    adamw_8bit_kernel(float* __restrict__ p, const float* __restrict__ g, uint8_t* __restrict__ mc,
                      uint8_t* __restrict__ vc, float* __restrict__ am, float* __restrict__ av, int64_t n,
                      Coeffs c, Maps maps) {
  __shared__ float smap[256], umap[256], scratch[kBlock / 32];
  const int t = threadIdx.x;
  smap[t] = maps.s[t];
  umap[t] = maps.u[t];
  __syncthreads();
  const int64_t b = blockIdx.x, i = b * kBlock + t;
  const bool live = i < n;
  float m = 0.0f, v = 0.0f;
  if (live) {
    const float gi = g[i];
    float pi = p[i] * c.decay;
    m = c.b1 * (smap[mc[i]] * am[b]) + (1 - c.b1) * gi;
    v = c.b2 * (umap[vc[i]] * av[b]) + (1 - c.b2) * gi * gi;
    pi -= c.step_size * m / (sqrtf(v) * c.inv_bc2_sqrt + c.eps);
    p[i] = pi;
  }
  // Every thread has read am[b] / av[b] above (block_max syncs) before thread 0 overwrites them.
  const float am_new = block_max(fabsf(m), scratch);
  const float av_new = block_max(v, scratch);
  if (t == 0) {
    am[b] = am_new;
    av[b] = av_new;
  }
  if (live) {
    mc[i] = nearest_code(smap, am_new > 0.0f ? m / am_new : 0.0f);
    vc[i] = nearest_code(umap, av_new > 0.0f ? v / av_new : 0.0f);
  }
}
}  // namespace

void adamw_8bit_step(float* param, const float* grad, uint8_t* m_codes, uint8_t* v_codes, float* absmax_m,
                     float* absmax_v, int64_t n, const AdamW8bitArgs& a, const std::array<float, 256>& signed_map,
                     const std::array<float, 256>& unsigned_map, cudaStream_t stream) {
  if (n == 0) return;
  Maps maps;
  for (int k = 0; k < 256; ++k) {
    maps.s[k] = signed_map[k];
    maps.u[k] = unsigned_map[k];
  }
  // Same scalar coefficients as the CPU kernel, computed in f64 on the host and rounded once.
  const double t = static_cast<double>(a.step);
  Coeffs c{a.beta1,
           a.beta2,
           static_cast<float>(1.0 - static_cast<double>(a.lr) * a.weight_decay),
           static_cast<float>(a.lr / (1.0 - std::pow(static_cast<double>(a.beta1), t))),
           static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(static_cast<double>(a.beta2), t))),
           a.eps};
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  adamw_8bit_kernel<<<static_cast<unsigned>(blocks), kBlock, 0, stream>>>(param, grad, m_codes, v_codes, absmax_m,
                                                                          absmax_v, n, c, maps);
  SL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace shardlab::cuda
