// CUDA kernels of the loss/lookup family behind the op API (see cuda/kernel_registry.h): the
// registration only; cross-entropy lives in cuda/cross_entropy_kernels.cu and the embedding
// lookup in cuda/embedding_kernels.cu.
#include "cuda/kernel_registry.h"
#include "cuda/reduce_internal.cuh"

namespace shardlab::cuda {

void register_loss_lookup_kernels(DeviceKernels& k) {
  k.embedding = &reduce_family::embedding;
  k.embedding_backward = &reduce_family::embedding_backward;
  k.cross_entropy_fwd = &reduce_family::cross_entropy_fwd;
  k.cross_entropy_bwd = &reduce_family::cross_entropy_bwd;
}

}  // namespace shardlab::cuda
