// Gathering every rank's trace to rank 0 and merging it (see tracing.h).
//
// NOTE [trace clock alignment]: each rank exports its spans relative to the moment it left one
// barrier, so rank clocks need not agree; the error is how far apart the ranks leave that barrier
// (on one host tens of microseconds: the communication thread polls every 10 to 100 us).
#include "distributed/tracing.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/memory_ledger.h"
#include "core/trace.h"

namespace shardlab::dist {

std::string collective_trace_args(CollectiveKind kind, const std::string& group, int64_t bytes) {
  return trace::Args().add("kind", collective_name(kind)).add("group", group).add("bytes", bytes).json();
}

void write_merged_trace(ProcessGroup& group, const std::string& path) {
  trace::stop();
  group.barrier()->wait();
  const int64_t origin_ns = trace::now_ns();
  std::string events;
  trace::export_chrome_events(trace::snapshot(), group.world_ranks()[group.rank()], origin_ns, events);
  const std::string mine = trace::chrome_trace(events);

  // Two all-gathers: every rank's length, then every rank's text padded to the longest.
  MemTagScope tag(MemTag::communication);
  const int n = group.size();
  Tensor length = Tensor::full({1}, static_cast<double>(mine.size()), DType::i64);
  Tensor lengths = Tensor::empty({n}, DType::i64);
  group.all_gather(lengths, length)->wait();
  int64_t longest = 0;
  for (int r = 0; r < n; ++r) longest = std::max(longest, lengths.data<int64_t>()[r]);
  Tensor text = Tensor::zeros({longest}, DType::u8);
  std::memcpy(text.raw_data(), mine.data(), mine.size());
  Tensor texts = Tensor::empty({n * longest}, DType::u8);
  group.all_gather(texts, text)->wait();
  if (group.rank() != 0) return;

  std::vector<std::string> traces;
  for (int r = 0; r < n; ++r)
    traces.emplace_back(reinterpret_cast<const char*>(texts.data<uint8_t>()) + r * longest,
                        static_cast<size_t>(lengths.data<int64_t>()[r]));
  const std::filesystem::path target(path);
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path());
  write_file_atomic(path, trace::merge_chrome_traces(traces));
}

}  // namespace shardlab::dist
