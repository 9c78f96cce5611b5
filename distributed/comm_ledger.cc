// The communication ledger's bookkeeping and its table.
#include "distributed/comm_ledger.h"

#include <cstdio>

namespace shardlab::dist {

const char* collective_name(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::all_reduce: return "all_reduce";
    case CollectiveKind::reduce_scatter: return "reduce_scatter";
    case CollectiveKind::all_gather: return "all_gather";
    case CollectiveKind::broadcast: return "broadcast";
    case CollectiveKind::barrier: return "barrier";
  }
  return "?";
}

void CommLedger::record(CollectiveKind kind, int64_t payload_bytes, int64_t wire_bytes, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  CollectiveStats& s = stats_[static_cast<int>(kind)];
  s.calls += 1;
  s.payload_bytes += payload_bytes;
  s.wire_bytes += wire_bytes;
  s.seconds += seconds;
}

void CommLedger::record_blocked(CollectiveKind kind, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_[static_cast<int>(kind)].blocked_seconds += seconds;
}

CollectiveStats CommLedger::stats(CollectiveKind kind) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_[static_cast<int>(kind)];
}

CollectiveStats CommLedger::total() const {
  std::lock_guard<std::mutex> lock(mutex_);
  CollectiveStats t;
  for (const CollectiveStats& s : stats_) {
    t.calls += s.calls;
    t.payload_bytes += s.payload_bytes;
    t.wire_bytes += s.wire_bytes;
    t.seconds += s.seconds;
    t.blocked_seconds += s.blocked_seconds;
  }
  return t;
}

void CommLedger::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_ = {};
}

std::string CommLedger::table() const {
  std::string out = "collective        calls   payload MiB   wire MiB    seconds   blocked s\n";
  char line[160];
  auto row = [&](const char* name, const CollectiveStats& s) {
    std::snprintf(line, sizeof line, "%-15s %7lld %13.3f %10.3f %10.4f %11.4f\n", name, static_cast<long long>(s.calls),
                  s.payload_bytes / 1048576.0, s.wire_bytes / 1048576.0, s.seconds, s.blocked_seconds);
    out += line;
  };
  for (int k = 0; k < 5; ++k) {
    const CollectiveStats s = stats(static_cast<CollectiveKind>(k));
    if (s.calls > 0) row(collective_name(static_cast<CollectiveKind>(k)), s);
  }
  row("total", total());
  return out;
}

int64_t ring_wire_bytes(CollectiveKind kind, int64_t payload_bytes, int group_size) {
  const int64_t n = group_size;
  if (n <= 1) return 0;
  switch (kind) {
    case CollectiveKind::all_reduce: return 2 * (n - 1) * payload_bytes / n;
    case CollectiveKind::reduce_scatter:
    case CollectiveKind::all_gather: return (n - 1) * payload_bytes / n;
    case CollectiveKind::broadcast: return payload_bytes;
    case CollectiveKind::barrier: return 0;
  }
  return 0;
}

}  // namespace shardlab::dist
