// The CUDA side of the caching allocators: cudaMalloc/cudaFree and cudaHostAlloc/cudaFreeHost
// segments, cudaEvents for cross-stream frees, one BlockCache per device plus one for pinned host
// memory, and the reserved bytes reported to the memory ledger.
#include "cuda/caching_allocator.h"

#include <array>
#include <cstdio>
#include <memory>
#include <mutex>

#include "core/error.h"
#include "core/memory_ledger.h"
#include "cuda/device.h"
#include "cuda/stream.h"

namespace shardlab::cuda {

namespace {

constexpr int kMaxDevices = 16;

StreamId stream_id(cudaStream_t s) { return reinterpret_cast<StreamId>(s); }

// Events shared by both backends: created without timing (cheaper), destroyed once completed.
uint64_t record_event_on(StreamId stream) {
  cudaEvent_t e = nullptr;
  SL_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  SL_CUDA_CHECK(cudaEventRecord(e, reinterpret_cast<cudaStream_t>(stream)));
  return reinterpret_cast<uint64_t>(e);
}
bool event_done(uint64_t event) {
  const cudaError_t status = cudaEventQuery(reinterpret_cast<cudaEvent_t>(event));
  if (status == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  SL_CUDA_CHECK(status);
  return true;
}
void destroy_event_now(uint64_t event) { SL_CUDA_CHECK(cudaEventDestroy(reinterpret_cast<cudaEvent_t>(event))); }

class DeviceSegments final : public CacheBackend {
 public:
  explicit DeviceSegments(int device) : device_(device) {}
  void* allocate_segment(size_t bytes) override {
    SL_CUDA_CHECK(cudaSetDevice(device_));
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, bytes);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // out of memory is the cache's to handle (empty and retry)
      return nullptr;
    }
    SL_CUDA_CHECK(status);
    return p;
  }
  void free_segment(void* ptr, size_t) override {
    SL_CUDA_CHECK(cudaSetDevice(device_));
    SL_CUDA_CHECK(cudaFree(ptr));  // synchronizes the device: no kernel can still be using it
  }
  uint64_t record_event(StreamId stream) override {
    SL_CUDA_CHECK(cudaSetDevice(device_));
    return record_event_on(stream);
  }
  bool event_completed(uint64_t event) override { return event_done(event); }
  void destroy_event(uint64_t event) override { destroy_event_now(event); }

 private:
  int device_;
};

class PinnedSegments final : public CacheBackend {
 public:
  void* allocate_segment(size_t bytes) override {
    void* p = nullptr;
    const cudaError_t status = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    SL_CUDA_CHECK(status);
    return p;
  }
  void free_segment(void* ptr, size_t) override { SL_CUDA_CHECK(cudaFreeHost(ptr)); }
  uint64_t record_event(StreamId stream) override { return record_event_on(stream); }
  bool event_completed(uint64_t event) override { return event_done(event); }
  void destroy_event(uint64_t event) override { destroy_event_now(event); }
};

// One cache per device, made on first use and never destroyed (storages may outlive statics).
struct DeviceCache {
  DeviceSegments segments;
  BlockCache cache;
  explicit DeviceCache(int device)
      : segments(device),
        cache(segments, Device::cuda(device).str() + " caching allocator", BlockCacheOptions{},
              [device](int64_t delta) { MemoryLedger::instance().on_reserve(Device::cuda(device), delta); }) {}
};

DeviceCache* device_cache(int device, bool create) {
  static std::array<DeviceCache*, kMaxDevices> caches{};
  static std::mutex mu;
  SL_CHECK(device >= 0 && device < kMaxDevices, "caching allocator: device index ", device, " out of range");
  std::lock_guard lock(mu);
  if (caches[device] == nullptr && create) caches[device] = new DeviceCache(device);
  return caches[device];
}

class DeviceCachingAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes, Device device) override {
    if (bytes == 0) return nullptr;
    return device_cache(device.index, true)->cache.allocate(bytes, stream_id(compute_stream(device.index)));
  }
  void deallocate(void* ptr, size_t, Device device) override {
    if (ptr == nullptr) return;
    device_cache(device.index, true)->cache.free(ptr);
  }
  const char* name() const override { return "cuda-caching"; }
};

struct PinnedCache {
  PinnedSegments segments;
  // Host blocks all belong to one pseudo stream (0); copies that use them record their stream.
  BlockCache cache{segments, "pinned host caching allocator"};
};

PinnedCache& pinned_cache() {
  static PinnedCache* cache = new PinnedCache();
  return *cache;
}

class PinnedHostAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes, Device) override { return bytes == 0 ? nullptr : pinned_cache().cache.allocate(bytes, 0); }
  void deallocate(void* ptr, size_t, Device) override {
    if (ptr != nullptr) pinned_cache().cache.free(ptr);
  }
  const char* name() const override { return "cuda-pinned-host"; }
};

std::string mib(int64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f MiB", static_cast<double>(b) / (1024.0 * 1024.0));
  return buf;
}

}  // namespace

Allocator& device_caching_allocator() {
  static DeviceCachingAllocator allocator;
  return allocator;
}

void empty_cache() {
  for (int d = 0; d < kMaxDevices; ++d)
    if (DeviceCache* c = device_cache(d, false)) c->cache.empty_cache();
}

BlockCacheStats caching_allocator_stats(int device) {
  DeviceCache* c = device_cache(device, false);
  return c == nullptr ? BlockCacheStats{} : c->cache.stats();
}

void reset_caching_allocator_peaks(int device) {
  if (DeviceCache* c = device_cache(device, false)) c->cache.reset_peaks();
}

std::string caching_allocator_summary(int device) {
  const BlockCacheStats s = caching_allocator_stats(device);
  return Device::cuda(device).str() + " caching allocator: allocated " + mib(s.allocated_bytes) + " (peak " +
         mib(s.peak_allocated_bytes) + "), reserved " + mib(s.reserved_bytes) + " (peak " + mib(s.peak_reserved_bytes) +
         "), cached " + mib(s.cached_bytes()) + "; " + std::to_string(s.segments) + " segments, " +
         std::to_string(s.cache_hits) + " of " + std::to_string(s.allocations) + " allocations from the cache, " +
         std::to_string(s.oom_retries) + " out-of-memory retries";
}

void record_stream(const Tensor& t, cudaStream_t stream) {
  if (!t.defined() || t.storage()->data() == nullptr) return;
  const Device d = t.device();
  if (d.is_cuda()) {
    SL_CHECK(t.storage()->allocator() == &device_caching_allocator(),
             "record_stream: the tensor's memory does not come from the CUDA caching allocator");
    device_cache(d.index, true)->cache.record_stream(t.storage()->data(), stream_id(stream));
  } else {
    SL_CHECK(is_pinned(t), "record_stream: a CPU tensor must be pinned (cuda::empty_pinned) to be used by a stream");
    pinned_cache().cache.record_stream(t.storage()->data(), stream_id(stream));
  }
}

Allocator& pinned_host_allocator() {
  static PinnedHostAllocator allocator;
  return allocator;
}

Tensor empty_pinned(const Shape& shape, DType dtype) {
  return Tensor::empty_with(pinned_host_allocator(), shape, dtype, Device::cpu());
}

bool is_pinned(const Tensor& t) {
  return t.defined() && t.storage()->allocator() == &pinned_host_allocator();
}

BlockCacheStats pinned_allocator_stats() { return pinned_cache().cache.stats(); }

}  // namespace shardlab::cuda
