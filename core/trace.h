// The tracer: timed spans (Chrome-trace "complete" events) of ops, backward nodes, modules,
// collectives and training phases, recorded per thread and exported as Chrome trace JSON that
// Perfetto and chrome://tracing open. Off by default; off costs one relaxed atomic load per span.
//
//   SL_TRACE_SCOPE("optimizer step", optimizer);          // a span to the end of the block
//   SL_TRACE_OP("matmul", a, b);                          // category op, args: shapes and dtypes
//   trace::Scope s(Category::autograd, [&] { return node->name() + " backward"; });
//
// NOTE [trace clocks]: timestamps are steady_clock nanoseconds. export_chrome_events() writes them
// in microseconds relative to an origin the caller picks; the multi-rank merge
// (distributed/trace_gather.h) uses each rank's exit from a common barrier as its origin.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace shardlab {

class Tensor;

namespace trace {

// What a span is. `copy`: host<->device transfers (Tensor::to, copy_async's issue and the host's
// wait for it: the part of an offload copy that compute did not hide).
enum class Category : uint8_t { op, autograd, module, collective, optimizer, copy, step };
const char* category_name(Category c);

namespace detail {
inline std::atomic<bool> recording{false};
}  // namespace detail

// Whether spans are being recorded now.
inline bool enabled() noexcept { return detail::recording.load(std::memory_order_relaxed); }

// Starts recording (dropping events of an earlier recording) and names the calling thread "main"
// unless it has a name already. stop() ends it; recorded events stay until the next start().
void start();
void stop();

// Names the calling thread in the trace, e.g. "communication". Cheap to call when off.
void set_thread_name(std::string name);

int64_t now_ns();

// Records a span of the calling thread that began at `start_ns` and ends now. Spans recorded this
// way may overlap without nesting (collectives in flight together): each one goes to the first
// "lane" of the thread that is free at `start_ns`; lanes after the first are shown as extra
// threads named "<thread> #2", "#3", ... so that every track nests properly in Perfetto.
void record_span(std::string name, Category category, int64_t start_ns, std::string args = {});

// Builds an args object: Args().add("group", "world").add("bytes", 4096).json().
class Args {
 public:
  Args& add(std::string_view key, std::string_view value);
  Args& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  Args& add(std::string_view key, int64_t value);
  std::string json() const { return body_.empty() ? std::string() : "{" + body_ + "}"; }

 private:
  std::string body_;
};

// {"shapes": "[2, 8] x [8, 4]", "dtype": "f32"} for an op's operands.
std::string tensor_args(std::initializer_list<std::reference_wrapper<const Tensor>> tensors);

// A span from construction to destruction on the calling thread. The name and args callables run
// only when recording, so an off tracer neither formats nor allocates.
class Scope {
 public:
  Scope(const char* name, Category category) noexcept : category_(category), static_name_(name) {
    if (enabled()) start_ns_ = now_ns();
  }
  template <typename ArgsFn>
    requires std::is_invocable_r_v<std::string, ArgsFn>
  Scope(const char* name, Category category, ArgsFn&& args) : category_(category), static_name_(name) {
    if (!enabled()) return;
    args_ = args();  // formatted before the clock starts, so the span times only the work
    start_ns_ = now_ns();
  }
  template <typename NameFn>
    requires std::is_invocable_r_v<std::string, NameFn>
  Scope(Category category, NameFn&& name) : category_(category) {
    if (!enabled()) return;
    name_ = name();
    start_ns_ = now_ns();
  }
  ~Scope() {
    if (start_ns_ >= 0 && enabled()) finish();
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  void finish() noexcept;

  int64_t start_ns_ = -1;  // -1: not recording
  Category category_;
  const char* static_name_ = nullptr;
  std::string name_;
  std::string args_;
};

// One recorded span, and the threads (tracks) that hold them.
struct Event {
  std::string name;
  Category category;
  int64_t start_ns;
  int64_t duration_ns;
  uint32_t tid;
  std::string args;  // a JSON object, or empty
};
struct ThreadInfo {
  uint32_t tid;
  std::string name;
};
struct Snapshot {
  std::vector<Event> events;  // by start time
  std::vector<ThreadInfo> threads;
};
// A copy of everything recorded since start().
Snapshot snapshot();

// Appends this snapshot as Chrome trace events to `out` (comma-separated, no brackets): metadata
// naming the process "rank <pid>" and its threads, then one "X" event per span with ts/dur in
// microseconds since `origin_ns`.
void export_chrome_events(const Snapshot& s, int pid, int64_t origin_ns, std::string& out);
// {"traceEvents": [<events>], "displayTimeUnit": "ms"}.
std::string chrome_trace(std::string_view events);

// One trace from several processes' traces (each a chrome_trace() document): their events in
// one list, shifted so that the earliest span starts at 0. Errors name the part that is not a
// Chrome trace.
std::string merge_chrome_traces(const std::vector<std::string>& traces);

}  // namespace trace
}  // namespace shardlab

#define SL_TRACE_CONCAT_INNER(a, b) a##b
#define SL_TRACE_CONCAT(a, b) SL_TRACE_CONCAT_INNER(a, b)
// A span named `name` (a string literal) of category `category` to the end of the enclosing block.
#define SL_TRACE_SCOPE(name, category) \
  ::shardlab::trace::Scope SL_TRACE_CONCAT(sl_trace_scope_, __LINE__)(name, ::shardlab::trace::Category::category)
// An op span whose args list the shapes and dtype of the given tensors.
#define SL_TRACE_OP(name, ...)                                                                           \
  ::shardlab::trace::Scope SL_TRACE_CONCAT(sl_trace_scope_, __LINE__)(name, ::shardlab::trace::Category::op, \
                                                                      [&] { return ::shardlab::trace::tensor_args({__VA_ARGS__}); })
