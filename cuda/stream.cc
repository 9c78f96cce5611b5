// Per-device streams, created once on first use.
#include "cuda/stream.h"

#include <mutex>

#include "core/error.h"
#include "cuda/device.h"

namespace shardlab::cuda {

namespace {
constexpr int kMaxDevices = 16;
}  // namespace

cudaStream_t compute_stream(int device) {
  static cudaStream_t streams[kMaxDevices] = {};
  static std::once_flag once[kMaxDevices];
  SL_CHECK(device >= 0 && device < kMaxDevices, "compute_stream: device index ", device, " out of range");
  std::call_once(once[device], [device] {
    int previous = 0;
    SL_CUDA_CHECK(cudaGetDevice(&previous));
    SL_CUDA_CHECK(cudaSetDevice(device));
    SL_CUDA_CHECK(cudaStreamCreateWithFlags(&streams[device], cudaStreamNonBlocking));
    SL_CUDA_CHECK(cudaSetDevice(previous));
  });
  return streams[device];
}

}  // namespace shardlab::cuda
