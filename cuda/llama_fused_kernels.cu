// CUDA kernels of the llama_fused family behind the op API (see cuda/kernel_registry.h).
#include "cuda/kernel_registry.h"

namespace shardlab::cuda {

void register_llama_fused_kernels(DeviceKernels& k) { (void)k; }

}  // namespace shardlab::cuda
