// Storage: one allocation (bytes on one device) shared by every tensor that views it. It reports
// itself to the memory ledger under its tag, and carries the version counter that autograd uses
// to catch in-place edits of saved tensors (views share it, as they share the bytes).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "core/device.h"
#include "core/memory_ledger.h"

namespace shardlab {

// Pluggable allocation for one device type. The CPU one is built in; the CUDA backend registers
// its caching allocator with set_allocator().
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes, Device device) = 0;
  virtual void deallocate(void* ptr, size_t bytes, Device device) = 0;
  virtual const char* name() const = 0;
};

Allocator* allocator_for(DeviceType type);
// Returns the allocator it replaces. Not thread-safe: call during start-up.
Allocator* set_allocator(DeviceType type, Allocator* allocator);

// Host memory a device can copy to and from directly (page-locked, "pinned"): what offloaded
// model state lives in. A device backend registers its pinned allocator; null without one (host
// tensors then use the plain CPU allocator). Returns the one it replaces; start-up only.
Allocator* pinned_host_allocator();
Allocator* set_pinned_host_allocator(Allocator* allocator);

class Storage {
 public:
  // Owns `bytes` fresh bytes from `allocator` on `device`, counted in the ledger under `tag`.
  Storage(size_t bytes, Device device, MemTag tag, Allocator* allocator);
  // Wraps memory someone else owns (not counted in the ledger); `release` runs on destruction.
  Storage(void* data, size_t bytes, Device device, std::function<void(void*)> release);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return bytes_; }
  Device device() const { return device_; }
  MemTag tag() const { return tag_; }
  // The allocator the bytes came from (null for wrapped external memory).
  Allocator* allocator() const { return allocator_; }
  // Moves the bytes to another ledger row (a tensor becomes a parameter, say).
  void retag(MemTag tag);

  // In-place release (what FSDP does with storage.resize_(0)): an owned storage gives its bytes
  // back to the allocator and the ledger while this object, and so every view and every tensor
  // autograd saved, stays bound to it; acquire_bytes() allocates them again (contents undefined,
  // data() may differ). Between the two, data() is null: a use faults instead of reading stale values.
  void release_bytes();
  void acquire_bytes();
  bool holds_bytes() const { return data_ != nullptr || bytes_ == 0; }
  // Wrapped (non-owning) storage only: point at other memory of the same size, e.g. the
  // re-acquired bytes of an owned storage this one aliases.
  void rebind(void* data);

  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
  MemTag tag_ = MemTag::other;
  Allocator* allocator_ = nullptr;  // null for wrapped external memory
  std::function<void(void*)> release_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace shardlab
