// Device memory for Device::cuda storage. For now every allocation is its own cudaMalloc; the
// size-class caching allocator replaces this.
#include "cuda/caching_allocator.h"

#include "cuda/device.h"

namespace shardlab::cuda {

namespace {
class DirectAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes, Device device) override {
    if (bytes == 0) return nullptr;
    SL_CUDA_CHECK(cudaSetDevice(device.index));
    void* p = nullptr;
    SL_CUDA_CHECK(cudaMalloc(&p, bytes));
    return p;
  }
  void deallocate(void* ptr, size_t, Device device) override {
    if (ptr == nullptr) return;
    SL_CUDA_CHECK(cudaSetDevice(device.index));
    SL_CUDA_CHECK(cudaFree(ptr));
  }
  const char* name() const override { return "cuda-direct"; }
};
}  // namespace

Allocator& device_caching_allocator() {
  static DirectAllocator allocator;
  return allocator;
}

}  // namespace shardlab::cuda
