// Asynchronous host<->device tensor copies on the copy stream: the host does not wait, the
// compute stream is ordered against the copy with an event when the result is needed. Host memory
// is pinned (page-locked) so the DMA engine can run while the CPU goes on; pageable input is
// staged through a pinned buffer first.
#pragma once

#include "core/tensor.h"
#include "cuda/stream.h"

namespace shardlab::cuda {

// A copy in flight: `tensor` is the destination; `done` completes when its bytes have arrived.
struct AsyncCopy {
  Tensor tensor;
  Event done;
  // Orders the compute stream of the destination's device (or of `device` for a host
  // destination) after the copy: ops queued later see the data. The host does not block.
  void wait_on_compute(int device) const { done.wait(compute_stream(device)); }
  // Blocks the host until the data has arrived (needed before reading a host destination).
  void synchronize() const { done.synchronize(); }
};

// host (CPU, any layout) -> a new contiguous tensor on cuda:`device`.
AsyncCopy copy_to_device_async(const Tensor& host, int device);
// device (CUDA, any layout) -> a new contiguous pinned CPU tensor.
AsyncCopy copy_to_host_async(const Tensor& device_tensor);

}  // namespace shardlab::cuda
