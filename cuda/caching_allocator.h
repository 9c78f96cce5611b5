// The allocators behind CUDA memory: a caching allocator per device for Device::cuda storage
// (installed by cuda::initialize()) and a caching pinned-host allocator for staging and offload.
// Both run on cuda/block_cache.h; the device one reports its reserved bytes to the memory ledger.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "core/storage.h"
#include "core/tensor.h"
#include "cuda/block_cache.h"

namespace shardlab::cuda {

// Device memory: blocks are cached per (device, stream); a storage's block belongs to the compute
// stream of its device (the stream every op kernel runs on).
Allocator& device_caching_allocator();

// Releases the cached, unused device memory of every device back to the driver (as
// torch.cuda.empty_cache()); memory of live tensors stays.
void empty_cache();
// The device cache's counters for one device (zeros for a device never allocated on).
BlockCacheStats caching_allocator_stats(int device);
void reset_caching_allocator_peaks(int device);
// A readable summary: allocated / reserved / cached and their peaks, segments, hits, OOM retries.
std::string caching_allocator_summary(int device);

// Tells the allocator that `t`'s memory is used by work queued on `stream` (not the compute
// stream): when the storage is freed, its block is reused only after that work is done.
void record_stream(const Tensor& t, cudaStream_t stream);

// Page-locked host memory for fast, truly asynchronous host<->device copies. Tensors on the CPU;
// their blocks are cached like device blocks.
Allocator& pinned_host_allocator();
Tensor empty_pinned(const Shape& shape, DType dtype);
// Whether `t`'s storage came from the pinned allocator.
bool is_pinned(const Tensor& t);
BlockCacheStats pinned_allocator_stats();

}  // namespace shardlab::cuda
