// CUDA kernels of the llama_fused family behind the op API (see cuda/kernel_registry.h): RMSNorm
// (cuda/rms_norm.cu), rotary embedding (cuda/rope.cu) and SwiGLU (cuda/swiglu.cu).
#include "cuda/kernel_registry.h"
#include "cuda/llama_fused_internal.cuh"

namespace shardlab::cuda {

void register_llama_fused_kernels(DeviceKernels& k) {
  register_rms_norm_kernels(k);
  register_rope_kernels(k);
  register_swiglu_kernels(k);
}

}  // namespace shardlab::cuda
