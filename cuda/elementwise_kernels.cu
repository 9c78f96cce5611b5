// CUDA kernels of the elementwise family behind the op API (see cuda/kernel_registry.h).
#include "cuda/kernel_registry.h"

namespace shardlab::cuda {

void register_elementwise_kernels(DeviceKernels& k) { (void)k; }

}  // namespace shardlab::cuda
