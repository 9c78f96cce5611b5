// CUDA NF4 kernels: absmax decoding, dequantization, and one tiled GEMM that dequantizes its weight
// tiles into shared memory (64 x 64 outputs per 256-thread block, 4 x 4 per thread, f32 accumulation,
// f64 for double), used with the weight transposed for the forward and as-is for the input gradient.
#include "cuda/nf4.h"

#include <cuda_fp16.h>

#include <climits>

#include "core/error.h"
#include "core/ops/nf4.h"
#include "cuda/device.h"
#include "cuda/dtype_dispatch.cuh"

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

unsigned blocks_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  SL_CHECK(blocks <= INT_MAX, "NF4 (CUDA): ", n, " elements exceed CUDA's grid limit");
  return static_cast<unsigned>(blocks);
}

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
  out[i] = from_acc<T>(weight_at(packed, absmax, code, i));
}

// c (M, C) = a (M, R) @ B (R, C), where B(r, j) = W[j][r] (kTransposed: forward, R = cols) or
// W[r][j] (input gradient, R = rows), W being rows x cols with `cols` the stride of its rows.
template <typename T, bool kTransposed>
__global__ void __launch_bounds__(kThreads)
    nf4_gemm_kernel(const T* __restrict__ a, const uint8_t* __restrict__ packed, const float* __restrict__ absmax,
                    int64_t cols, Nf4Code code, int64_t M, int64_t R, int64_t C, T* __restrict__ c) {
  using A = acc_t<T>;
  __shared__ A a_tile[kDepth][kTile + 1];  // [r][m], padded against bank conflicts
  __shared__ A b_tile[kDepth][kTile + 1];  // [r][j]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kTile, j0 = static_cast<int64_t>(blockIdx.y) * kTile;
  A acc[4][4] = {};
  for (int64_t r0 = 0; r0 < R; r0 += kDepth) {
    for (int e = threadIdx.x; e < kTile * kDepth; e += kThreads) {
      const int i = e / kDepth, r = e % kDepth;  // consecutive threads read consecutive a columns
      const int64_t gm = m0 + i, gr = r0 + r;
      a_tile[r][i] = gm < M && gr < R ? to_acc(a[gm * R + gr]) : A(0);
    }
    for (int e = threadIdx.x; e < kTile * kDepth; e += kThreads) {
      // Walk the weight along its rows (unit stride) in either orientation.
      const int j = kTransposed ? e / kDepth : e % kTile, r = kTransposed ? e % kDepth : e / kTile;
      const int64_t gj = j0 + j, gr = r0 + r;
      A v = 0;
      if (gj < C && gr < R) {
        const int64_t index = kTransposed ? gj * cols + gr : gr * cols + gj;
        v = to_acc(from_acc<T>(weight_at(packed, absmax, code, index)));  // rounded to T, as the CPU tile
      }
      b_tile[r][j] = v;
    }
    __syncthreads();
#pragma unroll 8
    for (int r = 0; r < kDepth; ++r) {
      A av[4], bv[4];
      for (int k = 0; k < 4; ++k) {
        av[k] = a_tile[r][ty * 4 + k];
        bv[k] = b_tile[r][tx * 4 + k];
      }
      for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 4; ++x) acc[y][x] += av[y] * bv[x];
    }
    __syncthreads();
  }
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) {
      const int64_t gm = m0 + ty * 4 + y, gj = j0 + tx * 4 + x;
      if (gm < M && gj < C) c[gm * C + gj] = from_acc<T>(acc[y][x]);
    }
}

void check_weight(const char* op, const Nf4DeviceWeight& w, int64_t M) {
  SL_CHECK(w.packed != nullptr && w.absmax != nullptr, op, ": NF4 weight pointers are null");
  SL_CHECK(w.rows > 0 && w.cols > 0 && M >= 0, op, ": bad sizes: weight (", w.rows, ", ", w.cols, "), M = ", M);
}

template <typename T, bool kTransposed>
void launch_gemm(const T* a, const Nf4DeviceWeight& w, int64_t M, int64_t R, int64_t C, T* c, cudaStream_t stream) {
  if (M == 0) return;
  const dim3 grid(blocks_for(M, kTile), blocks_for(C, kTile));
  SL_CHECK(grid.y <= 65535u, "nf4_linear (CUDA): ", C, " output columns exceed the grid's y limit");
  nf4_gemm_kernel<T, kTransposed>
      <<<grid, kThreads, 0, stream>>>(a, w.packed, w.absmax, w.cols, nf4_code(), M, R, C, c);
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

template <typename T>
void nf4_dequantize(const Nf4DeviceWeight& w, T* out, cudaStream_t stream) {
  check_weight("nf4_dequantize", w, 0);
  const int64_t n = w.rows * w.cols;
  dequantize_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream>>>(w.packed, w.absmax, n, nf4_code(), out);
  SL_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void nf4_linear_forward(const T* x, const Nf4DeviceWeight& w, int64_t M, T* y, cudaStream_t stream) {
  check_weight("nf4_linear", w, M);
  launch_gemm<T, true>(x, w, M, w.cols, w.rows, y, stream);
}

template <typename T>
void nf4_linear_backward_input(const T* dy, const Nf4DeviceWeight& w, int64_t M, T* dx, cudaStream_t stream) {
  check_weight("nf4_linear_backward_input", w, M);
  launch_gemm<T, false>(dy, w, M, w.rows, w.cols, dx, stream);
}

#define SL_NF4_INSTANTIATE(T)                                                                              \
  template void nf4_dequantize<T>(const Nf4DeviceWeight&, T*, cudaStream_t);                               \
  template void nf4_linear_forward<T>(const T*, const Nf4DeviceWeight&, int64_t, T*, cudaStream_t);        \
  template void nf4_linear_backward_input<T>(const T*, const Nf4DeviceWeight&, int64_t, T*, cudaStream_t);
SL_NF4_INSTANTIATE(float)
SL_NF4_INSTANTIATE(double)
SL_NF4_INSTANTIATE(__nv_bfloat16)
SL_NF4_INSTANTIATE(__half)
#undef SL_NF4_INSTANTIATE

}  // namespace shardlab::cuda
