// The tracer: nested scopes nest, threads get their own tracks, overlapping spans get lanes, an off
// tracer records and allocates nothing, and the Chrome trace export and merge parse back.
#include "core/trace.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <new>
#include <thread>

#include "core/json.h"
#include "core/tensor.h"

namespace {
// Heap allocations made by this thread; counted by the replacement operator new below.
thread_local int64_t allocations_here = 0;
}  // namespace

// Replaced for the whole test binary; it only counts, then allocates as the default one does.
// (GCC cannot see that the replacement delete below pairs with it.)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  ++allocations_here;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace shardlab::trace {
namespace {

const Event& find_event(const Snapshot& s, const std::string& name) {
  for (const Event& e : s.events)
    if (e.name == name) return e;
  ADD_FAILURE() << "no event named " << name;
  return s.events.front();
}

bool contains(const Event& outer, const Event& inner) {
  return outer.start_ns <= inner.start_ns && inner.start_ns + inner.duration_ns <= outer.start_ns + outer.duration_ns;
}

void spin_for_us(int64_t us) {
  const int64_t until = now_ns() + us * 1000;
  while (now_ns() < until) {
  }
}

TEST(Trace, NestedScopesNestAndThreadsGetTheirOwnTrack) {
  start();
  {
    SL_TRACE_SCOPE("step", step);
    spin_for_us(50);
    {
      SL_TRACE_SCOPE("optimizer step", optimizer);
      spin_for_us(50);
    }
    std::thread([] {
      set_thread_name("worker");
      Scope s(Category::autograd, [] { return std::string("mul backward"); });
      spin_for_us(20);
    }).join();
    spin_for_us(50);
  }
  stop();
  {
    SL_TRACE_SCOPE("after stop", step);
  }
  const Snapshot s = snapshot();
  ASSERT_EQ(s.events.size(), 3u);
  const Event& step = find_event(s, "step");
  const Event& opt = find_event(s, "optimizer step");
  const Event& worker = find_event(s, "mul backward");
  EXPECT_EQ(step.category, Category::step);
  EXPECT_EQ(opt.category, Category::optimizer);
  EXPECT_EQ(worker.category, Category::autograd);
  EXPECT_TRUE(contains(step, opt));
  EXPECT_GE(opt.duration_ns, 50'000);
  EXPECT_GE(step.duration_ns, 150'000);
  EXPECT_EQ(step.tid, opt.tid);
  EXPECT_NE(worker.tid, step.tid);
  std::string main_name, worker_name;
  for (const ThreadInfo& t : s.threads) {
    if (t.tid == step.tid) main_name = t.name;
    if (t.tid == worker.tid) worker_name = t.name;
  }
  EXPECT_EQ(main_name, "main");
  EXPECT_EQ(worker_name, "worker");
  // Parents come before the spans they contain.
  EXPECT_EQ(s.events.front().name, "step");
}

TEST(Trace, OffRecordsNothingAndAllocatesNothing) {
  start();
  stop();
  const Tensor a = Tensor::zeros({2, 3});
  const int64_t before = allocations_here;
  for (int i = 0; i < 100; ++i) {
    SL_TRACE_SCOPE("step", step);
    SL_TRACE_OP("matmul", a, a);
    Scope named(Category::autograd, [] { return std::string("a name long enough to need the heap, surely"); });
  }
  EXPECT_EQ(allocations_here, before);
  EXPECT_TRUE(snapshot().events.empty());
}

TEST(Trace, OpArgsNameShapesAndDtype) {
  const Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({3, 4}, DType::f64);
  start();
  {
    SL_TRACE_OP("matmul", a, b);
  }
  stop();
  const Snapshot s = snapshot();
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_EQ(s.events[0].args, R"j({"shapes":"(2, 3) x (3, 4)","dtype":"f32"})j");
  EXPECT_EQ(Args().add("group", "world").add("bytes", int64_t{4096}).json(), R"({"group":"world","bytes":4096})");
  EXPECT_EQ(Args().json(), "");
}

TEST(Trace, OverlappingSpansGoToLanesNestedOnesShareATrack) {
  std::thread([] {
    set_thread_name("communication");
    start();
    const int64_t t0 = now_ns();
    spin_for_us(20);
    const int64_t t1 = now_ns();
    spin_for_us(20);
    record_span("a", Category::collective, t0);  // [t0, now]
    spin_for_us(20);
    record_span("b", Category::collective, t1);  // starts inside a, ends after it: a second lane
    const int64_t t2 = now_ns();
    spin_for_us(20);
    record_span("c", Category::collective, t2, Args().add("kind", "all_reduce").json());  // after both: lane 1
    stop();
  }).join();
  const Snapshot s = snapshot();
  ASSERT_EQ(s.events.size(), 3u);
  const Event &a = find_event(s, "a"), &b = find_event(s, "b"), &c = find_event(s, "c");
  EXPECT_NE(a.tid, b.tid);
  EXPECT_EQ(a.tid, c.tid);
  EXPECT_EQ(c.args, R"({"kind":"all_reduce"})");
  std::string lane_name;
  for (const ThreadInfo& t : s.threads)
    if (t.tid == b.tid) lane_name = t.name;
  EXPECT_EQ(lane_name, "communication #2");
}

TEST(Trace, ChromeExportParsesWithMicrosecondsSinceTheOrigin) {
  Snapshot s;
  s.threads = {{1, "main"}, {2, "communication"}};
  s.events = {{"forward", Category::step, 1'000'000, 2'500, 1, ""},
              {"all_reduce", Category::collective, 1'001'000, 4'000, 2, R"({"bytes":64})"}};
  std::string events;
  export_chrome_events(s, 3, 999'000, events);
  const json::Value doc = json::parse(chrome_trace(events));
  EXPECT_EQ(doc.at("displayTimeUnit").as_string(), "ms");
  int spans = 0;
  bool named_process = false;
  for (const json::Value& e : doc.at("traceEvents").as_array()) {
    EXPECT_EQ(e.at("pid").as_int(), 3);
    if (e.at("ph").as_string() == "M" && e.at("name").as_string() == "process_name")
      named_process = e.at("args").at("name").as_string() == "rank 3";
    if (e.at("ph").as_string() != "X") continue;
    ++spans;
    if (e.at("name").as_string() == "forward") {
      EXPECT_DOUBLE_EQ(e.at("ts").as_double(), 1.0);
      EXPECT_DOUBLE_EQ(e.at("dur").as_double(), 2.5);
      EXPECT_EQ(e.at("cat").as_string(), "step");
      EXPECT_EQ(e.at("tid").as_int(), 1);
    } else {
      EXPECT_DOUBLE_EQ(e.at("ts").as_double(), 2.0);
      EXPECT_EQ(e.at("args").at("bytes").as_int(), 64);
      EXPECT_EQ(e.at("cat").as_string(), "collective");
    }
  }
  EXPECT_EQ(spans, 2);
  EXPECT_TRUE(named_process);
}

TEST(Trace, MergeKeepsEveryRankAndStartsAtZero) {
  auto rank_trace = [](int pid, int64_t start_ns) {
    Snapshot s;
    s.threads = {{1, "main"}};
    s.events = {{"step", Category::step, start_ns, 1'000, 1, ""}};
    std::string events;
    export_chrome_events(s, pid, 0, events);
    return chrome_trace(events);
  };
  const json::Value merged = json::parse(merge_chrome_traces({rank_trace(0, 5'000), rank_trace(1, 7'500)}));
  std::vector<std::pair<int64_t, double>> steps;
  for (const json::Value& e : merged.at("traceEvents").as_array())
    if (e.at("ph").as_string() == "X") steps.emplace_back(e.at("pid").as_int(), e.at("ts").as_double());
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0], (std::pair<int64_t, double>{0, 0.0}));
  EXPECT_EQ(steps[1], (std::pair<int64_t, double>{1, 2.5}));
  EXPECT_THROW(merge_chrome_traces({R"({"events":[]})"}), Error);
}

}  // namespace
}  // namespace shardlab::trace
