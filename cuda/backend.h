// Bringing the CUDA backend up: the caching allocator behind Device::cuda storage and the kernel
// table behind the op API. Call once at start-up; a machine without a GPU is not an error.
#pragma once

#include <string>
#include <vector>

namespace shardlab::cuda {

// Registers the CUDA allocator and kernels when a GPU is visible; returns whether it did. Safe to
// call more than once.
bool initialize();
// Whether initialize() has registered the backend.
bool initialized();
// The op entry points that still have no CUDA kernel (rows of core/device_kernels.def).
std::vector<std::string> ops_without_cuda_kernel();

}  // namespace shardlab::cuda
