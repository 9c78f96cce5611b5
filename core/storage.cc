// Storage lifetime, ledger reporting and the built-in 64-byte-aligned CPU allocator.
#include "core/storage.h"

#include <cstdlib>
#include <new>

#include "core/error.h"

namespace shardlab {

namespace {

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes, Device) override {
    if (bytes == 0) return nullptr;
    size_t rounded = (bytes + 63) / 64 * 64;  // aligned_alloc wants a multiple of the alignment
    void* p = std::aligned_alloc(64, rounded);
    SL_CHECK(p != nullptr, "cpu allocator: out of memory allocating ", bytes, " bytes");
    return p;
  }
  void deallocate(void* ptr, size_t, Device) override { std::free(ptr); }
  const char* name() const override { return "cpu"; }
};

Allocator*& slot(DeviceType type) {
  static CpuAllocator cpu;
  static Allocator* slots[2] = {&cpu, nullptr};
  return slots[static_cast<int>(type)];
}

}  // namespace

Allocator* allocator_for(DeviceType type) {
  Allocator* a = slot(type);
  SL_CHECK(a != nullptr, "no allocator for device type ", type == DeviceType::cuda ? "cuda" : "cpu",
           " (is this a build without the CUDA backend?)");
  return a;
}

Allocator* set_allocator(DeviceType type, Allocator* allocator) {
  Allocator* old = slot(type);
  slot(type) = allocator;
  return old;
}

Storage::Storage(size_t bytes, Device device, MemTag tag, Allocator* allocator)
    : bytes_(bytes), device_(device), tag_(tag), allocator_(allocator) {
  data_ = allocator_->allocate(bytes, device);
  MemoryLedger::instance().on_alloc(device_, tag_, static_cast<int64_t>(bytes_));
}

Storage::Storage(void* data, size_t bytes, Device device, std::function<void(void*)> release)
    : data_(data), bytes_(bytes), device_(device), release_(std::move(release)) {}

Storage::~Storage() {
  if (allocator_ != nullptr) {
    allocator_->deallocate(data_, bytes_, device_);
    MemoryLedger::instance().on_free(device_, tag_, static_cast<int64_t>(bytes_));
  } else if (release_) {
    release_(data_);
  }
}

void Storage::retag(MemTag tag) {
  if (allocator_ != nullptr) MemoryLedger::instance().on_retag(device_, tag_, tag, static_cast<int64_t>(bytes_));
  tag_ = tag;
}

}  // namespace shardlab
