// Private to the reduce and loss/lookup kernel files (reduce_kernels.cu, softmax_kernels.cu,
// cross_entropy_kernels.cu, embedding_kernels.cu): argument checks, launch helpers, and the op
// functions that live in sibling files but are registered by register_reduce_kernels and
// register_loss_lookup_kernels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <limits>

#include "core/checks.h"
#include "core/error.h"
#include "core/memory_ledger.h"
#include "core/ops/fused.h"
#include "core/ops/reduce.h"
#include "core/tensor.h"
#include "cuda/device.h"
#include "cuda/stream.h"

namespace shardlab::cuda::reduce_family {

// Every tensor defined and on the CUDA device of the first (an error naming `op` otherwise).
inline void check_on_cuda(const char* op, std::initializer_list<Tensor> tensors) {
  const Tensor* first = nullptr;
  int i = 0;
  for (const Tensor& t : tensors) {
    SL_CHECK(t.defined(), op, ": argument ", i, " is an undefined tensor");
    if (first == nullptr) {
      SL_CHECK(t.device().is_cuda(), op, ": argument 0 is on ", t.device().str(), ", not a CUDA device");
      first = &t;
    } else {
      check_same_device(op, *first, t);
    }
    ++i;
  }
}

// Makes `device` current and returns the stream every op kernel on it launches on.
inline cudaStream_t launch_stream(Device device) {
  SL_CUDA_CHECK(cudaSetDevice(device.index));
  return compute_stream(device.index);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A 1-D grid of `blocks` blocks (gridDim.x allows up to 2^31 - 1).
inline unsigned grid_1d(int64_t blocks, const char* op) {
  SL_CHECK(blocks > 0 && blocks <= std::numeric_limits<int32_t>::max(), op, ": ", blocks,
           " CUDA blocks do not fit one grid dimension");
  return static_cast<unsigned>(blocks);
}

// A grid-stride launch over n elements: enough blocks of `threads` to cover n, capped (each
// thread then loops); the cap keeps grid_1d valid for any n.
inline unsigned grid_for(int64_t n, int threads) {
  constexpr int64_t kMaxBlocks = int64_t{1} << 20;
  const int64_t blocks = ceil_div(n, threads);
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks > kMaxBlocks ? kMaxBlocks : blocks);
}

// NOTE [bad-input flags]: a kernel that finds an invalid index (an embedding id, a cross-entropy
// target, a max_backward index) records the smallest offending position with an integer atomicMin
// in a word of device memory, and the op then copies that word back, which waits for the stream.
// The host cannot know the indices without that synchronizing copy; it is acceptable because these
// ops run once or twice per training step (and cross_entropy_fwd must return its count to the
// host anyway), and it lets the error name the offending value and position as the CPU op does.
class BadPositionFlag {
 public:
  BadPositionFlag(Device device, cudaStream_t stream) : stream_(stream) {
    MemTagScope scope(MemTag::workspace);
    word_ = Tensor::empty({8}, DType::u8, device);
    SL_CUDA_CHECK(cudaMemsetAsync(word_.raw_data(), 0xFF, 8, stream));  // all ones = nothing flagged
  }
  unsigned long long* device_ptr() const { return static_cast<unsigned long long*>(word_.raw_data()); }
  // Waits for the stream; returns the smallest flagged position, or -1 when none was flagged.
  int64_t first_bad() const {
    unsigned long long host = 0;
    SL_CUDA_CHECK(cudaMemcpyAsync(&host, device_ptr(), sizeof(host), cudaMemcpyDeviceToHost, stream_));
    SL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return host == ~0ull ? -1 : static_cast<int64_t>(host);
  }

 private:
  Tensor word_;
  cudaStream_t stream_;
};

// Flags position `pos` (device side of BadPositionFlag).
__device__ inline void flag_bad_position(unsigned long long* flag, int64_t pos) {
  atomicMin(flag, static_cast<unsigned long long>(pos));
}

// One element of device memory, read back to the host (waits for the stream; error paths only).
template <typename I>
I read_device_element(const I* p, cudaStream_t stream) {
  I host{};
  SL_CUDA_CHECK(cudaMemcpyAsync(&host, p, sizeof(I), cudaMemcpyDeviceToHost, stream));
  SL_CUDA_CHECK(cudaStreamSynchronize(stream));
  return host;
}

// ---- ops defined in softmax_kernels.cu, registered by register_reduce_kernels ----
Tensor softmax(const Tensor& t, int64_t dim);
Tensor log_softmax(const Tensor& t, int64_t dim);
Tensor softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim);
Tensor log_softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim);

// ---- ops defined in cross_entropy_kernels.cu and embedding_kernels.cu, registered by
// register_loss_lookup_kernels ----
ops::CrossEntropyOut cross_entropy_fwd(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                       ops::Reduction reduction);
Tensor cross_entropy_bwd(const Tensor& dloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                         int64_t ignore_index, ops::Reduction reduction, int64_t count);
Tensor embedding(const Tensor& weight, const Tensor& ids);
Tensor embedding_backward(const Tensor& grad, const Tensor& ids, int64_t num_embeddings);

}  // namespace shardlab::cuda::reduce_family
