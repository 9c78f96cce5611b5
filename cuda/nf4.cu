// CUDA NF4 kernels: absmax decoding, dequantization, and one tiled GEMM that dequantizes its weight
// tiles into shared memory (64 x 64 outputs per 256-thread block, 4 x 4 per thread, f32 accumulation),
// used with the weight transposed for the forward and as-is for the input gradient.
#include "cuda/nf4.h"

#include <type_traits>

#include "core/error.h"
#include "core/ops/nf4.h"
#include "cuda/device.h"

namespace shardlab::cuda {

namespace {
constexpr int kTile = 64;    // output rows and columns per CUDA block
constexpr int kDepth = 32;   // reduction slice per shared-memory stage
constexpr int kThreads = 256;

// Small tables travel by value as kernel parameters (no global state).
struct Nf4Code {
  float v[16];
};
struct NestedMap {
  float v[256];
};

Nf4Code nf4_code() {
  Nf4Code c;
  for (int i = 0; i < 16; ++i) c.v[i] = ops::kNf4Code[i];
  return c;
}

unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

// Element i of a weight: its nibble's code times its block's absmax, one rounding (__fmul_rn keeps
// nvcc from fusing it with anything).
__device__ __forceinline__ float weight_at(const uint8_t* __restrict__ packed, const float* __restrict__ absmax,
                                           const Nf4Code& code, int64_t i) {
  const uint8_t byte = packed[i >> 1];
  const int c = (i & 1) ? (byte & 0xF) : (byte >> 4);
  return __fmul_rn(code.v[c], absmax[i / ops::kNf4Block]);
}

__global__ void decode_absmax_kernel(const uint8_t* __restrict__ codes, const float* __restrict__ nested,
                                     const float* __restrict__ offset, int64_t blocks, NestedMap map,
                                     float* __restrict__ absmax) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b < blocks) absmax[b] = __fadd_rn(__fmul_rn(map.v[codes[b]], nested[b / ops::kNf4AbsmaxBlock]), *offset);
}

template <typename T>
__global__ void dequantize_kernel(const uint8_t* __restrict__ packed, const float* __restrict__ absmax, int64_t n,
                                  Nf4Code code, T* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = weight_at(packed, absmax, code, i);
  if constexpr (std::is_same_v<T, float>) out[i] = v;
  else out[i] = __float2bfloat16_rn(v);
}

// c (M, C) = a (M, R) @ B (R, C), where B(r, j) = W[j][r] (kTransposed: forward, R = cols) or
// W[r][j] (input gradient, R = rows), W being rows x cols with `cols` the stride of its rows.
template <bool kTransposed>
__global__ void __launch_bounds__(kThreads)
    nf4_gemm_kernel(const __nv_bfloat16* __restrict__ a, const uint8_t* __restrict__ packed,
                    const float* __restrict__ absmax, int64_t cols, Nf4Code code, int64_t M, int64_t R, int64_t C,
                    __nv_bfloat16* __restrict__ c) {
  __shared__ float a_tile[kDepth][kTile + 1];  // [r][m], padded against bank conflicts
  __shared__ float b_tile[kDepth][kTile + 1];  // [r][j]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kTile, j0 = static_cast<int64_t>(blockIdx.y) * kTile;
  float acc[4][4] = {};
  for (int64_t r0 = 0; r0 < R; r0 += kDepth) {
    for (int e = threadIdx.x; e < kTile * kDepth; e += kThreads) {
      const int i = e / kDepth, r = e % kDepth;  // consecutive threads read consecutive a columns
      const int64_t gm = m0 + i, gr = r0 + r;
      a_tile[r][i] = gm < M && gr < R ? __bfloat162float(a[gm * R + gr]) : 0.0f;
    }
    for (int e = threadIdx.x; e < kTile * kDepth; e += kThreads) {
      // Walk the weight along its rows (unit stride) in either orientation.
      const int j = kTransposed ? e / kDepth : e % kTile, r = kTransposed ? e % kDepth : e / kTile;
      const int64_t gj = j0 + j, gr = r0 + r;
      float v = 0.0f;
      if (gj < C && gr < R) {
        const int64_t index = kTransposed ? gj * cols + gr : gr * cols + gj;
        v = __bfloat162float(__float2bfloat16_rn(weight_at(packed, absmax, code, index)));
      }
      b_tile[r][j] = v;
    }
    __syncthreads();
#pragma unroll 8
    for (int r = 0; r < kDepth; ++r) {
      float av[4], bv[4];
      for (int k = 0; k < 4; ++k) {
        av[k] = a_tile[r][ty * 4 + k];
        bv[k] = b_tile[r][tx * 4 + k];
      }
      for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 4; ++x) acc[y][x] = fmaf(av[y], bv[x], acc[y][x]);
    }
    __syncthreads();
  }
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) {
      const int64_t gm = m0 + ty * 4 + y, gj = j0 + tx * 4 + x;
      if (gm < M && gj < C) c[gm * C + gj] = __float2bfloat16_rn(acc[y][x]);
    }
}

void check_weight(const char* op, const Nf4DeviceWeight& w, int64_t M) {
  SL_CHECK(w.packed != nullptr && w.absmax != nullptr, op, ": NF4 weight pointers are null");
  SL_CHECK(w.rows > 0 && w.cols > 0 && M >= 0, op, ": bad sizes: weight (", w.rows, ", ", w.cols, "), M = ", M);
}

template <bool kTransposed>
void launch_gemm(const __nv_bfloat16* a, const Nf4DeviceWeight& w, int64_t M, int64_t R, int64_t C,
                 __nv_bfloat16* c, cudaStream_t stream) {
  if (M == 0) return;
  const dim3 grid(blocks_for(M, kTile), blocks_for(C, kTile));
  SL_CHECK(grid.y <= 65535u, "nf4_linear (CUDA): ", C, " output columns exceed the grid's y limit");
  nf4_gemm_kernel<kTransposed><<<grid, kThreads, 0, stream>>>(a, w.packed, w.absmax, w.cols, nf4_code(), M, R, C, c);
  SL_CUDA_CHECK(cudaGetLastError());
}
}  // namespace

void nf4_decode_absmax(const uint8_t* codes, const float* nested_absmax, const float* offset, int64_t blocks,
                       const float* nested_map_host, float* absmax, cudaStream_t stream) {
  if (blocks == 0) return;
  NestedMap map;
  for (int k = 0; k < 256; ++k) map.v[k] = nested_map_host[k];
  decode_absmax_kernel<<<blocks_for(blocks, kThreads), kThreads, 0, stream>>>(codes, nested_absmax, offset, blocks,
                                                                              map, absmax);
  SL_CUDA_CHECK(cudaGetLastError());
}

void nf4_dequantize(const Nf4DeviceWeight& w, float* out, cudaStream_t stream) {
  check_weight("nf4_dequantize", w, 0);
  const int64_t n = w.rows * w.cols;
  dequantize_kernel<float><<<blocks_for(n, kThreads), kThreads, 0, stream>>>(w.packed, w.absmax, n, nf4_code(), out);
  SL_CUDA_CHECK(cudaGetLastError());
}

void nf4_dequantize(const Nf4DeviceWeight& w, __nv_bfloat16* out, cudaStream_t stream) {
  check_weight("nf4_dequantize", w, 0);
  const int64_t n = w.rows * w.cols;
  dequantize_kernel<__nv_bfloat16>
      <<<blocks_for(n, kThreads), kThreads, 0, stream>>>(w.packed, w.absmax, n, nf4_code(), out);
  SL_CUDA_CHECK(cudaGetLastError());
}

void nf4_linear_forward(const __nv_bfloat16* x, const Nf4DeviceWeight& w, int64_t M, __nv_bfloat16* y,
                        cudaStream_t stream) {
  check_weight("nf4_linear", w, M);
  launch_gemm<true>(x, w, M, w.cols, w.rows, y, stream);
}

void nf4_linear_backward_input(const __nv_bfloat16* dy, const Nf4DeviceWeight& w, int64_t M, __nv_bfloat16* dx,
                               cudaStream_t stream) {
  check_weight("nf4_linear_backward_input", w, M);
  launch_gemm<false>(dy, w, M, w.rows, w.cols, dx, stream);
}

}  // namespace shardlab::cuda
