// CUDA kernels of the attention family behind the op API (see cuda/kernel_registry.h).
#include "cuda/kernel_registry.h"

namespace shardlab::cuda {

void register_attention_kernels(DeviceKernels& k) { (void)k; }

}  // namespace shardlab::cuda
