// Private to the llama_fused CUDA files (rms_norm.cu, rope.cu, swiglu.cu): the registration
// function of each, called by register_llama_fused_kernels, and the vector-load type they share.
#pragma once

#include "core/device_kernels.h"

namespace shardlab::cuda {

void register_rms_norm_kernels(DeviceKernels& k);  // rms_norm_fwd, rms_norm_bwd
void register_rope_kernels(DeviceKernels& k);      // rope_fwd, rope_bwd
void register_swiglu_kernels(DeviceKernels& k);    // swiglu_fwd, swiglu_bwd

// V consecutive elements moved by one load or store: 16 bytes when V = 16 / sizeof(T), which
// needs a 16-byte aligned address (callers check it and fall back to V = 1).
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};
template <typename T>
inline constexpr int kPackWidth = 16 / static_cast<int>(sizeof(T));

}  // namespace shardlab::cuda
