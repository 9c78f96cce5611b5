// CUDA kernels of the optimizer family behind the op API (see cuda/kernel_registry.h).
#include "cuda/kernel_registry.h"

namespace shardlab::cuda {

void register_optimizer_kernels(DeviceKernels& k) { (void)k; }

}  // namespace shardlab::cuda
