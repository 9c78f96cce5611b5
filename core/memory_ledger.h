// The memory ledger: live and peak bytes per device and per tag (parameter, gradient, ...).
// Every Storage reports its allocation and free here, so "what is live on this rank and why" can
// be answered at any moment. Peaks can be reset to measure one phase at a time.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/device.h"

namespace shardlab {

enum class MemTag : uint8_t {
  parameter,
  gradient,
  optimizer_state,
  activation,
  communication,
  workspace,
  other,
};
inline constexpr int kNumMemTags = 7;
const char* mem_tag_name(MemTag tag);

struct TagBytes {
  int64_t live = 0;
  int64_t peak = 0;
};

struct DeviceMemory {
  std::array<TagBytes, kNumMemTags> tags{};
  int64_t live = 0;  // all tags together
  int64_t peak = 0;  // peak of the sum (not the sum of per-tag peaks)
  // Bytes a caching allocator holds from the device (live tensors plus its cache); 0 on devices
  // whose allocator does not cache (the CPU). reserved - live is memory cached for reuse.
  int64_t reserved = 0;
  int64_t reserved_peak = 0;
  const TagBytes& operator[](MemTag t) const { return tags[static_cast<int>(t)]; }
};

class MemoryLedger {
 public:
  // The process-wide ledger. Allocations are process-wide facts, like a CUDA driver's.
  static MemoryLedger& instance();

  void on_alloc(Device device, MemTag tag, int64_t bytes);
  void on_free(Device device, MemTag tag, int64_t bytes);
  void on_retag(Device device, MemTag from, MemTag to, int64_t bytes);
  // A caching allocator took (delta > 0) or returned (delta < 0) memory from the device.
  void on_reserve(Device device, int64_t delta);

  DeviceMemory snapshot(Device device) const;
  std::vector<Device> devices() const;
  // Peaks restart from the current live bytes.
  void reset_peaks();
  // A readable table: one row per device and tag with live and peak MiB.
  std::string table() const;

 private:
  mutable std::mutex mu_;
  std::map<Device, DeviceMemory> per_device_;
};

// Allocations made on this thread while the scope lives carry `tag` (scopes nest).
class MemTagScope {
 public:
  explicit MemTagScope(MemTag tag);
  ~MemTagScope();
  MemTagScope(const MemTagScope&) = delete;
  MemTagScope& operator=(const MemTagScope&) = delete;
  static MemTag current();

 private:
  MemTag previous_;
};

}  // namespace shardlab
