// The communication ledger: per collective kind, how many calls, how many bytes and how long, on
// one rank. It only observes: recording never changes what runs or when.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>

#include "distributed/process_group.h"

namespace shardlab::dist {

struct CollectiveStats {
  int64_t calls = 0;
  // The tensor bytes handed to the collective: all_reduce/broadcast the tensor, reduce_scatter
  // the (larger) input, all_gather the (larger) output. The ZeRO paper's Psi counts are in these.
  int64_t payload_bytes = 0;
  // Bytes this rank sends under a ring algorithm: all_reduce 2(N-1)/N of the payload,
  // reduce_scatter and all_gather (N-1)/N, broadcast the payload (root) — the alpha-beta model's figure.
  int64_t wire_bytes = 0;
  double seconds = 0.0;          // issue to completion, summed
  double blocked_seconds = 0.0;  // time callers spent inside Work::wait(), summed (not hidden by compute)
};

class CommLedger {
 public:
  void record(CollectiveKind kind, int64_t payload_bytes, int64_t wire_bytes, double seconds);
  void record_blocked(CollectiveKind kind, double seconds);
  CollectiveStats stats(CollectiveKind kind) const;
  CollectiveStats total() const;
  void reset();
  // A table: one row per collective kind with calls, payload MiB, wire MiB, seconds, blocked seconds.
  std::string table() const;

 private:
  mutable std::mutex mutex_;
  std::array<CollectiveStats, 5> stats_{};
};

// Bytes a rank sends in a ring implementation of `kind` over `group_size` ranks.
int64_t ring_wire_bytes(CollectiveKind kind, int64_t payload_bytes, int group_size);

}  // namespace shardlab::dist
