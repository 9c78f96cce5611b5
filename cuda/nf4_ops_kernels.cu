// CUDA kernels of the nf4 family behind the op API (see cuda/kernel_registry.h).
#include "cuda/kernel_registry.h"

namespace shardlab::cuda {

void register_nf4_kernels(DeviceKernels& k) { (void)k; }

}  // namespace shardlab::cuda
