// The CUDA 8-bit AdamW step and blockwise (de)quantization on raw device pointers, the GPU twins
// of ops::adamw_8bit_step / quantize_blockwise / dequantize_blockwise (core/cpu/adamw_8bit.cc).
// cuda/optimizer_kernels.cu wraps them behind the op API.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/ops/optim.h"

namespace shardlab::cuda {

// One step over n elements in blocks of 256 (one CUDA block each): dequantize m (signed dynamic
// map) and v (unsigned map) with the block's absmax, update as adamw_step does (math in f32, f64
// for double parameters), write the parameter, then re-quantize m and v to the nearest code with
// the block's new absmax. T is float, double, __nv_bfloat16 or __half (instantiated in the .cu);
// grad has param's type; absmax_m / absmax_v hold ceil(n / 256) floats. All device pointers.
template <typename T>
void adamw_8bit_step(T* param, const T* grad, uint8_t* m_codes, uint8_t* v_codes, float* absmax_m, float* absmax_v,
                     int64_t n, const ops::AdamWHyper& h, cudaStream_t stream);

// absmax[b] = max |x| over block b of 256; codes[i] = the nearest dynamic-map entry to
// x[i] / absmax[b] (an all-zero block stores absmax 0 and the code of 0).
void quantize_blockwise(const float* x, uint8_t* codes, float* absmax, int64_t n, bool is_signed,
                        cudaStream_t stream);
// out[i] = map[codes[i]] * absmax[i / 256].
void dequantize_blockwise(const uint8_t* codes, const float* absmax, float* out, int64_t n, bool is_signed,
                          cudaStream_t stream);

}  // namespace shardlab::cuda
