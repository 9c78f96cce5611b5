// Host-side helpers shared by the fused-op, optimizer and NF4 kernel files: device checks whose
// errors name the op, the stream an op's kernels launch on, and 1-D grid sizes within CUDA's limits.
#pragma once

#include <cuda_runtime_api.h>

#include <climits>
#include <cstdint>
#include <initializer_list>

#include "core/checks.h"
#include "core/tensor.h"
#include "cuda/device.h"
#include "cuda/stream.h"

namespace shardlab::cuda {

// Every tensor defined and on the CUDA device of the first one; returns that device.
inline Device check_cuda_args(const char* op, std::initializer_list<Tensor> tensors) {
  const Tensor* first = nullptr;
  int i = 0;
  for (const Tensor& t : tensors) {
    SL_CHECK(t.defined(), op, ": argument ", i, " is an undefined tensor");
    if (first == nullptr) {
      SL_CHECK(t.device().is_cuda(), op, ": argument 0 is on ", t.device().str(), ", not on a CUDA device");
      first = &t;
    } else {
      check_same_device(op, *first, t);
    }
    ++i;
  }
  SL_CHECK(first != nullptr, op, ": called without tensor arguments");
  return first->device();
}

// Makes `device` current and returns the stream its op kernels launch on.
inline cudaStream_t op_stream(Device device) {
  SL_CUDA_CHECK(cudaSetDevice(device.index));
  return compute_stream(device.index);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks of `threads` covering n > 0 items; an error naming `op` past the grid's x limit.
inline unsigned grid_1d(int64_t n, int threads, const char* op) {
  const int64_t blocks = ceil_div(n, threads);
  SL_CHECK(blocks >= 1 && blocks <= INT_MAX, op, ": ", n, " items need ", blocks,
           " blocks of ", threads, " threads, outside CUDA's grid limit");
  return static_cast<unsigned>(blocks);
}

// Whether a device pointer is aligned for 16-byte vector loads.
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace shardlab::cuda
