// The CUDA runtime basics every kernel file needs: how many GPUs there are (0, not an error, on a
// machine without a driver or GPU), their names, and SL_CUDA_CHECK, which turns a failed runtime
// call into a shardlab::Error naming the call, the CUDA error and the call site.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

namespace shardlab::cuda {

// Number of visible CUDA devices; 0 when there is no driver, no GPU, or only a stub libcuda.
int device_count();
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)"-style name of device `index`; errors on a bad index.
std::string device_name(int index);
// Compute capability as major*10 + minor (90 for Hopper).
int compute_capability(int index);

// Fills `n` floats at device pointer `dst` with `value` (a kernel on the default stream).
void fill(float* dst, int64_t n, float value);
// Allocates n floats on `device`, fills them with `value` on the GPU, copies them back and frees:
// the smallest round trip that proves kernels run and memory moves on that device.
std::vector<float> fill_roundtrip(int device, int64_t n, float value);

namespace detail {
[[noreturn]] void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line);
}  // namespace detail

}  // namespace shardlab::cuda

// SL_CUDA_CHECK(cudaMalloc(&p, bytes)): throws shardlab::Error
// "CUDA error cudaErrorMemoryAllocation (out of memory) in cudaMalloc(&p, bytes) at cuda/x.cu:12".
#define SL_CUDA_CHECK(call)                                                             \
  do {                                                                                  \
    const cudaError_t sl_cuda_status_ = (call);                                         \
    if (sl_cuda_status_ != cudaSuccess)                                                 \
      ::shardlab::cuda::detail::throw_cuda_error(sl_cuda_status_, #call, __FILE__, __LINE__); \
  } while (0)
