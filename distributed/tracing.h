// Tracing across ranks: the args every collective span carries, and the merged Chrome trace of a
// multi-rank run (each rank's spans as process "rank R", clocks aligned at a common barrier).
#pragma once

#include <string>

#include "distributed/process_group.h"

namespace shardlab::dist {

// {"kind": "all_reduce", "group": "world", "bytes": 4096} for a collective's trace span.
std::string collective_trace_args(CollectiveKind kind, const std::string& group, int64_t bytes);

// Stops the tracer (core/trace.h) and writes the spans of every rank of `group`, merged into one
// Chrome trace that Perfetto opens, to `path` on the group's rank 0 (atomically). Collective: every
// rank calls it. What `bench` and `train` call after trace::start() and the traced work.
void write_merged_trace(ProcessGroup& group, const std::string& path);

}  // namespace shardlab::dist
