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

namespace {
Allocator*& pinned_slot() {
  static Allocator* pinned = nullptr;
  return pinned;
}
}  // namespace

Allocator* pinned_host_allocator() { return pinned_slot(); }

Allocator* set_pinned_host_allocator(Allocator* allocator) {
  Allocator* old = pinned_slot();
  pinned_slot() = allocator;
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
    release_bytes();  // a no-op when released in place already
  } else if (release_) {
    release_(data_);
  }
}

void Storage::retag(MemTag tag) {
  // Released bytes are not in the ledger: only the row they return to changes.
  if (allocator_ != nullptr && holds_bytes())
    MemoryLedger::instance().on_retag(device_, tag_, tag, static_cast<int64_t>(bytes_));
  tag_ = tag;
}

void Storage::release_bytes() {
  SL_CHECK(allocator_ != nullptr, "storage: release_bytes on wrapped memory (only owned storage can release in place)");
  if (!holds_bytes()) return;
  allocator_->deallocate(data_, bytes_, device_);
  data_ = nullptr;
  MemoryLedger::instance().on_free(device_, tag_, static_cast<int64_t>(bytes_));
}

void Storage::acquire_bytes() {
  SL_CHECK(allocator_ != nullptr, "storage: acquire_bytes on wrapped memory (only owned storage can re-acquire)");
  if (holds_bytes()) return;
  data_ = allocator_->allocate(bytes_, device_);
  MemoryLedger::instance().on_alloc(device_, tag_, static_cast<int64_t>(bytes_));
}

void Storage::rebind(void* data) {
  SL_CHECK(allocator_ == nullptr && !release_, "storage: rebind is for non-owning wrapped storage only");
  data_ = data;
}

}  // namespace shardlab
