// The tracer's per-thread event buffers, lanes for overlapping spans, and Chrome trace export and
// merging (see trace.h).
#include "core/trace.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>

#include "core/error.h"
#include "core/json.h"
#include "core/tensor.h"

namespace shardlab::trace {

namespace {

// One thread's events. Only its thread appends; snapshot() and start() read or clear it, so a
// mutex that is uncontended while recording guards it.
struct ThreadBuffer {
  std::mutex mutex;
  std::vector<Event> events;
  uint32_t tid = 0;
  std::string name;
  // record_span's lanes (touched by the owning thread only): when each lane's last span ends and
  // the track (tid) it is drawn on; reset when a new recording starts.
  struct Lane {
    int64_t end_ns;
    uint32_t tid;
  };
  std::vector<Lane> lanes;
  uint64_t lanes_recording = 0;
};

struct Registry {
  std::mutex mutex;
  std::vector<std::shared_ptr<ThreadBuffer>> threads;
  std::vector<ThreadInfo> lane_tracks;  // the extra tracks of lanes after the first
  uint32_t next_tid = 1;
  std::atomic<uint64_t> recordings{0};  // how many times start() ran
};

// Never destroyed: threads that outlive main's statics may still record.
Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

ThreadBuffer& this_thread_buffer() {
  thread_local std::shared_ptr<ThreadBuffer> buffer = [] {
    auto b = std::make_shared<ThreadBuffer>();
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    b->tid = r.next_tid++;
    b->name = "thread " + std::to_string(b->tid);
    r.threads.push_back(b);
    return b;
  }();
  return *buffer;
}

void append(ThreadBuffer& b, Event e) {
  std::lock_guard<std::mutex> lock(b.mutex);
  b.events.push_back(std::move(e));
}

void append_us(std::string& out, int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(ns) / 1000.0);
  out += buf;
}

void append_metadata(std::string& out, const char* what, int pid, uint32_t tid, const char* key,
                     const std::string& value_json) {
  if (!out.empty()) out += ",\n";
  out += "{\"name\":\"";
  out += what;
  out += "\",\"ph\":\"M\",\"pid\":" + std::to_string(pid) + ",\"tid\":" + std::to_string(tid) + ",\"args\":{\"" + key +
         "\":" + value_json + "}}";
}

std::string quoted(std::string_view s) {
  std::string out;
  json::append_quoted(out, s);
  return out;
}

}  // namespace

const char* category_name(Category c) {
  switch (c) {
    case Category::op: return "op";
    case Category::autograd: return "autograd";
    case Category::module: return "module";
    case Category::collective: return "collective";
    case Category::optimizer: return "optimizer";
    case Category::copy: return "copy";
    case Category::step: return "step";
  }
  return "unknown";
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void start() {
  ThreadBuffer& self = this_thread_buffer();
  Registry& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    for (auto& t : r.threads) {
      std::lock_guard<std::mutex> tl(t->mutex);
      t->events.clear();
      if (t.get() == &self && t->name == "thread " + std::to_string(t->tid)) t->name = "main";
    }
  }
  r.recordings.fetch_add(1);
  detail::recording.store(true, std::memory_order_relaxed);
}

void stop() { detail::recording.store(false, std::memory_order_relaxed); }

void set_thread_name(std::string name) {
  ThreadBuffer& b = this_thread_buffer();
  std::lock_guard<std::mutex> lock(registry().mutex);
  b.name = std::move(name);
}

void record_span(std::string name, Category category, int64_t start_ns, std::string args) {
  if (!enabled()) return;
  const int64_t end_ns = now_ns();
  ThreadBuffer& b = this_thread_buffer();
  Registry& r = registry();
  if (const uint64_t current = r.recordings.load(); b.lanes_recording != current) {
    for (ThreadBuffer::Lane& l : b.lanes) l.end_ns = INT64_MIN;
    b.lanes_recording = current;
  }
  if (b.lanes.empty()) b.lanes.push_back({INT64_MIN, b.tid});
  auto lane = std::find_if(b.lanes.begin(), b.lanes.end(), [&](const ThreadBuffer::Lane& l) { return l.end_ns <= start_ns; });
  if (lane == b.lanes.end()) {
    std::lock_guard<std::mutex> lock(r.mutex);
    const uint32_t tid = r.next_tid++;
    r.lane_tracks.push_back({tid, b.name + " #" + std::to_string(b.lanes.size() + 1)});
    b.lanes.push_back({INT64_MIN, tid});
    lane = b.lanes.end() - 1;
  }
  lane->end_ns = end_ns;
  append(b, {std::move(name), category, start_ns, end_ns - start_ns, lane->tid, std::move(args)});
}

Args& Args::add(std::string_view key, std::string_view value) {
  if (!body_.empty()) body_ += ',';
  json::append_quoted(body_, key);
  body_ += ':';
  json::append_quoted(body_, value);
  return *this;
}

Args& Args::add(std::string_view key, int64_t value) {
  if (!body_.empty()) body_ += ',';
  json::append_quoted(body_, key);
  body_ += ':' + std::to_string(value);
  return *this;
}

std::string tensor_args(std::initializer_list<std::reference_wrapper<const Tensor>> tensors) {
  std::string shapes;
  for (const Tensor& t : tensors) {
    if (!shapes.empty()) shapes += " x ";
    shapes += t.defined() ? shape_str(t.shape()) : "undefined";
  }
  Args a;
  a.add("shapes", shapes);
  if (tensors.size() > 0 && tensors.begin()->get().defined()) a.add("dtype", dtype_name(tensors.begin()->get().dtype()));
  return a.json();
}

void Scope::finish() noexcept {
  try {
    const int64_t end = now_ns();
    ThreadBuffer& b = this_thread_buffer();
    append(b, {static_name_ != nullptr ? std::string(static_name_) : std::move(name_), category_, start_ns_,
               end - start_ns_, b.tid, std::move(args_)});
  } catch (...) {
    // Out of memory while tracing: the span is lost, the program goes on.
  }
}

Snapshot snapshot() {
  Snapshot s;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (auto& t : r.threads) {
    std::lock_guard<std::mutex> tl(t->mutex);
    s.events.insert(s.events.end(), t->events.begin(), t->events.end());
    s.threads.push_back({t->tid, t->name});
  }
  s.threads.insert(s.threads.end(), r.lane_tracks.begin(), r.lane_tracks.end());
  // Parents before the spans they contain: by start, then longest first.
  std::sort(s.events.begin(), s.events.end(), [](const Event& a, const Event& b) {
    if (a.start_ns != b.start_ns) return a.start_ns < b.start_ns;
    return a.duration_ns > b.duration_ns;
  });
  return s;
}

void export_chrome_events(const Snapshot& s, int pid, int64_t origin_ns, std::string& out) {
  append_metadata(out, "process_name", pid, 0, "name", quoted("rank " + std::to_string(pid)));
  append_metadata(out, "process_sort_index", pid, 0, "sort_index", std::to_string(pid));
  for (const ThreadInfo& t : s.threads) {
    append_metadata(out, "thread_name", pid, t.tid, "name", quoted(t.name));
    // The main (compute) thread first, then the others in the order they appeared.
    append_metadata(out, "thread_sort_index", pid, t.tid, "sort_index", t.name == "main" ? "0" : std::to_string(t.tid));
  }
  for (const Event& e : s.events) {
    out += ",\n{\"name\":";
    json::append_quoted(out, e.name);
    out += ",\"cat\":\"";
    out += category_name(e.category);
    out += "\",\"ph\":\"X\",\"ts\":";
    append_us(out, e.start_ns - origin_ns);
    out += ",\"dur\":";
    append_us(out, e.duration_ns);
    out += ",\"pid\":" + std::to_string(pid) + ",\"tid\":" + std::to_string(e.tid);
    if (!e.args.empty()) out += ",\"args\":" + e.args;
    out += '}';
  }
}

std::string chrome_trace(std::string_view events) {
  std::string out = "{\"traceEvents\":[\n";
  out += events;
  out += "\n],\"displayTimeUnit\":\"ms\"}\n";
  return out;
}

std::string merge_chrome_traces(const std::vector<std::string>& traces) {
  json::Array all;
  for (size_t i = 0; i < traces.size(); ++i) {
    json::Value doc = json::parse(traces[i], "trace " + std::to_string(i));
    const json::Value* events = doc.find("traceEvents");
    SL_CHECK(events != nullptr && events->is_array(), "merge_chrome_traces: trace ", i,
             " is not a Chrome trace (no traceEvents array)");
    for (const json::Value& e : events->as_array()) all.push_back(e);
  }
  double earliest = INFINITY;
  for (const json::Value& e : all)
    if (const json::Value* ts = e.find("ts")) earliest = std::min(earliest, ts->as_double());
  if (std::isfinite(earliest))
    for (json::Value& e : all)
      if (const json::Value* ts = e.find("ts")) e.set("ts", std::round((ts->as_double() - earliest) * 1000.0) / 1000.0);
  json::Value doc = json::Value::object();
  doc.set("traceEvents", json::Value(std::move(all)));
  doc.set("displayTimeUnit", "ms");
  return json::dump(doc) + "\n";
}

}  // namespace shardlab::trace
