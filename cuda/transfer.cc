// Host<->device copies on the copy stream with pinned staging, event-ordered against the compute
// stream; blocks used across streams are recorded so the caching allocators hold them back.
#include "cuda/transfer.h"

#include <cstring>

#include "core/error.h"
#include "core/ops/views.h"
#include "cuda/caching_allocator.h"
#include "cuda/device.h"

namespace shardlab::cuda {

AsyncCopy copy_to_device_async(const Tensor& host, int device) {
  SL_CHECK(host.device().is_cpu(), "copy_to_device_async: the source must be on the CPU, got ", host.device().str());
  Tensor src = ops::contiguous(host);
  if (!is_pinned(src)) {
    Tensor staged = empty_pinned(src.shape(), src.dtype());
    if (src.nbytes() > 0) std::memcpy(staged.raw_data(), src.raw_data(), static_cast<size_t>(src.nbytes()));
    src = staged;
  }
  SL_CUDA_CHECK(cudaSetDevice(device));
  AsyncCopy copy{Tensor::empty(src.shape(), src.dtype(), Device::cuda(device)), Event()};
  const cudaStream_t copies = copy_stream(device);
  // The destination block belongs to the compute stream, which may still be using its previous
  // tenant: the copy starts after the compute stream's queued work.
  stream_wait_stream(copies, compute_stream(device));
  if (src.nbytes() > 0) {
    SL_CUDA_CHECK(cudaMemcpyAsync(copy.tensor.raw_data(), src.raw_data(), static_cast<size_t>(src.nbytes()),
                                  cudaMemcpyHostToDevice, copies));
    record_stream(copy.tensor, copies);
    record_stream(src, copies);  // the pinned block is reused only after the DMA has read it
  }
  copy.done.record(copies);
  return copy;
}

AsyncCopy copy_to_host_async(const Tensor& device_tensor) {
  SL_CHECK(device_tensor.device().is_cuda(), "copy_to_host_async: the source must be on a GPU, got ",
           device_tensor.device().str());
  const int device = device_tensor.device().index;
  SL_CUDA_CHECK(cudaSetDevice(device));
  const Tensor src = ops::contiguous(device_tensor);  // a kernel on the compute stream if strided
  AsyncCopy copy{empty_pinned(src.shape(), src.dtype()), Event()};
  const cudaStream_t copies = copy_stream(device);
  stream_wait_stream(copies, compute_stream(device));  // the source is produced there
  if (src.nbytes() > 0) {
    SL_CUDA_CHECK(cudaMemcpyAsync(copy.tensor.raw_data(), src.raw_data(), static_cast<size_t>(src.nbytes()),
                                  cudaMemcpyDeviceToHost, copies));
    record_stream(src, copies);
    record_stream(copy.tensor, copies);
  }
  copy.done.record(copies);
  return copy;
}

}  // namespace shardlab::cuda
