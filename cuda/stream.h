// Streams per device: the compute stream every op kernel launches on (ops on one device are
// ordered by it, as PyTorch's current stream), and separate streams for copies and collectives
// that are ordered against it with events.
#pragma once

#include <cuda_runtime_api.h>

namespace shardlab::cuda {

// The stream op kernels on `device` launch on (created on first use, non-blocking).
cudaStream_t compute_stream(int device);

}  // namespace shardlab::cuda
