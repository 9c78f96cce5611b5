// Memory ledger bookkeeping and its printed table.
#include "core/memory_ledger.h"

#include <algorithm>
#include <cstdio>

namespace shardlab {

namespace {
thread_local MemTag t_current_tag = MemTag::other;
constexpr const char* kTagNames[kNumMemTags] = {"parameter", "gradient",  "optimizer_state", "activation",
                                                "communication", "workspace", "other"};

void grow(DeviceMemory& m, MemTag tag, int64_t bytes) {
  TagBytes& t = m.tags[static_cast<int>(tag)];
  t.live += bytes;
  t.peak = std::max(t.peak, t.live);
  m.live += bytes;
  m.peak = std::max(m.peak, m.live);
}
}  // namespace

const char* mem_tag_name(MemTag tag) { return kTagNames[static_cast<int>(tag)]; }

MemoryLedger& MemoryLedger::instance() {
  static MemoryLedger* ledger = new MemoryLedger();  // never destroyed: storages may outlive statics
  return *ledger;
}

void MemoryLedger::on_alloc(Device device, MemTag tag, int64_t bytes) {
  std::lock_guard lock(mu_);
  grow(per_device_[device], tag, bytes);
}

void MemoryLedger::on_free(Device device, MemTag tag, int64_t bytes) {
  std::lock_guard lock(mu_);
  DeviceMemory& m = per_device_[device];
  m.tags[static_cast<int>(tag)].live -= bytes;
  m.live -= bytes;
}

void MemoryLedger::on_retag(Device device, MemTag from, MemTag to, int64_t bytes) {
  if (from == to) return;
  std::lock_guard lock(mu_);
  DeviceMemory& m = per_device_[device];
  m.tags[static_cast<int>(from)].live -= bytes;
  m.live -= bytes;
  grow(m, to, bytes);
}

void MemoryLedger::on_reserve(Device device, int64_t delta) {
  std::lock_guard lock(mu_);
  DeviceMemory& m = per_device_[device];
  m.reserved += delta;
  m.reserved_peak = std::max(m.reserved_peak, m.reserved);
}

DeviceMemory MemoryLedger::snapshot(Device device) const {
  std::lock_guard lock(mu_);
  auto it = per_device_.find(device);
  return it == per_device_.end() ? DeviceMemory{} : it->second;
}

std::vector<Device> MemoryLedger::devices() const {
  std::lock_guard lock(mu_);
  std::vector<Device> out;
  for (const auto& [d, m] : per_device_) out.push_back(d);
  return out;
}

void MemoryLedger::reset_peaks() {
  std::lock_guard lock(mu_);
  for (auto& [d, m] : per_device_) {
    for (auto& t : m.tags) t.peak = t.live;
    m.peak = m.live;
    m.reserved_peak = m.reserved;
  }
}

std::string MemoryLedger::table() const {
  std::lock_guard lock(mu_);
  std::string out = "device    tag               live MiB    peak MiB\n";
  char line[128];
  auto mib = [](int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); };
  for (const auto& [d, m] : per_device_) {
    for (int i = 0; i < kNumMemTags; ++i) {
      const TagBytes& t = m.tags[i];
      if (t.live == 0 && t.peak == 0) continue;
      std::snprintf(line, sizeof(line), "%-9s %-16s %10.3f  %10.3f\n", d.str().c_str(), kTagNames[i],
                    mib(t.live), mib(t.peak));
      out += line;
    }
    std::snprintf(line, sizeof(line), "%-9s %-16s %10.3f  %10.3f\n", d.str().c_str(), "total", mib(m.live),
                  mib(m.peak));
    out += line;
    if (m.reserved != 0 || m.reserved_peak != 0) {  // the caching allocator's hold, cache included
      std::snprintf(line, sizeof(line), "%-9s %-16s %10.3f  %10.3f\n", d.str().c_str(), "reserved", mib(m.reserved),
                    mib(m.reserved_peak));
      out += line;
    }
  }
  return out;
}

MemTagScope::MemTagScope(MemTag tag) : previous_(t_current_tag) { t_current_tag = tag; }
MemTagScope::~MemTagScope() { t_current_tag = previous_; }
MemTag MemTagScope::current() { return t_current_tag; }

}  // namespace shardlab
