// CUDA NF4 kernels on raw device pointers, the GPU twins of core/cpu/nf4.cc and nf4_linear.cc:
// absmax decoding, dequantization, and a fused dequantize-GEMM for nf4_linear's forward and input
// gradient. cuda/nf4_ops_kernels.cu wraps them behind the op API.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace shardlab::cuda {

// One NF4 weight of `rows` x `cols` (a Linear's (out, in)) in device memory, laid out as
// shardlab::Nf4Tensor / bitsandbytes: packed codes (first element in the high nibble) and the
// decoded f32 absmax of every 64-block (from nf4_decode_absmax).
struct Nf4DeviceWeight {
  const uint8_t* packed;
  const float* absmax;
  int64_t rows, cols;
};

// absmax[b] = nested_map[codes[b]] * nested_absmax[b / 256] + *offset for `blocks` blocks, the
// product and the sum rounded separately as bitsandbytes does; nested_map is ops::nf4_nested_map().
void nf4_decode_absmax(const uint8_t* codes, const float* nested_absmax, const float* offset, int64_t blocks,
                       const float* nested_map_host, float* absmax, cudaStream_t stream = nullptr);

// out[i] = kNf4Code[code(i)] * absmax[i / 64] (f32) for the weight's rows * cols elements, rounded
// once to T. T is float, double, __nv_bfloat16 or __half (instantiated in nf4.cu).
template <typename T>
void nf4_dequantize(const Nf4DeviceWeight& w, T* out, cudaStream_t stream = nullptr);

// y (M, rows) = x (M, cols) @ W^T, row-major T in and out (float, double, __nv_bfloat16 or __half),
// accumulated in acc_t<T> (f32, f64 for double); each 64 x 32 weight tile is dequantized and rounded
// to T (as the CPU kernel rounds its tile to x's dtype) into shared memory.
template <typename T>
void nf4_linear_forward(const T* x, const Nf4DeviceWeight& w, int64_t M, T* y, cudaStream_t stream = nullptr);
// dx (M, cols) = dy (M, rows) @ W.
template <typename T>
void nf4_linear_backward_input(const T* dy, const Nf4DeviceWeight& w, int64_t M, T* dx,
                               cudaStream_t stream = nullptr);

}  // namespace shardlab::cuda
