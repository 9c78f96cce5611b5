// The CUDA 8-bit AdamW step on raw device pointers (f32 parameters), the GPU twin of
// ops::adamw_8bit_step in core/cpu/adamw_8bit.cc. Not yet wired into the op API.
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <cstdint>

namespace shardlab::cuda {

struct AdamW8bitArgs {
  float lr, beta1, beta2, eps, weight_decay;
  int64_t step;  // 1-based, for bias correction
};

// One step over n elements in blocks of 256 (one CUDA block each): dequantize m (signed map) and
// v (unsigned map) with the block's absmax, update in f32 as adamw_step does, write the parameter,
// then re-quantize m and v to the nearest code with the block's new absmax. The maps are
// ops::dynamic_map(true) / (false); all pointers are device pointers; absmax has ceil(n/256) floats.
void adamw_8bit_step(float* param, const float* grad, uint8_t* m_codes, uint8_t* v_codes, float* absmax_m,
                     float* absmax_v, int64_t n, const AdamW8bitArgs& args, const std::array<float, 256>& signed_map,
                     const std::array<float, 256>& unsigned_map, cudaStream_t stream = nullptr);

}  // namespace shardlab::cuda
