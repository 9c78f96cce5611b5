// Checks a training run's trace.json (parsed with core/json): one "rank R" process per rank with
// spans, every track properly nested (what Perfetto needs), collectives on the communication
// thread (on the main thread for one process), and each rank's step phases, optimizer step inside
// its step, ops and backward nodes. Prints one line per failed check.
//   trace_check TRACE.json NRANKS
#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/json.h"

namespace {

using namespace shardlab;

struct Span {
  std::string name, cat;
  double ts, end;
  int64_t pid, tid;
};

int failures = 0;
void check(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

bool contains(const Span& outer, const Span& inner) {
  constexpr double kSlackUs = 1e-3;  // one nanosecond, the export's resolution
  return outer.ts <= inner.ts + kSlackUs && inner.end <= outer.end + kSlackUs;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: trace_check TRACE.json NRANKS\n");
    return 2;
  }
  const int nranks = std::stoi(argv[2]);
  try {
    const json::Value doc = json::parse_file(argv[1]);
    check(doc.at("displayTimeUnit").as_string() == "ms", "displayTimeUnit is not \"ms\"");
    std::map<std::pair<int64_t, int64_t>, std::string> thread_names;
    std::map<int64_t, std::string> process_names;
    std::vector<Span> spans;
    for (const json::Value& e : doc.at("traceEvents").as_array()) {
      const std::string ph = e.at("ph").as_string();
      const int64_t pid = e.at("pid").as_int(), tid = e.at("tid").as_int();
      if (ph == "M") {
        if (e.at("name").as_string() == "thread_name") thread_names[{pid, tid}] = e.at("args").at("name").as_string();
        if (e.at("name").as_string() == "process_name") process_names[pid] = e.at("args").at("name").as_string();
        continue;
      }
      check(ph == "X", "an event of phase " + ph);
      const double ts = e.at("ts").as_double();
      check(ts >= 0, "negative ts");
      spans.push_back({e.at("name").as_string(), e.at("cat").as_string(), ts, ts + e.at("dur").as_double(), pid, tid});
    }

    // Every track nests: a span that starts inside another ends inside it.
    std::map<std::pair<int64_t, int64_t>, std::vector<Span>> tracks;
    for (const Span& s : spans) tracks[{s.pid, s.tid}].push_back(s);
    for (auto& [track, list] : tracks) {
      std::sort(list.begin(), list.end(), [](const Span& a, const Span& b) {
        return a.ts != b.ts ? a.ts < b.ts : a.end > b.end;
      });
      std::vector<Span> open;
      for (const Span& s : list) {
        while (!open.empty() && open.back().end <= s.ts + 1e-3) open.pop_back();
        if (!open.empty())
          check(contains(open.back(), s), "rank " + std::to_string(track.first) + ": '" + s.name +
                                              "' overlaps '" + open.back().name + "' on one track without nesting");
        open.push_back(s);
      }
    }

    for (int r = 0; r < nranks; ++r) {
      const std::string rank = "rank " + std::to_string(r);
      check(process_names[r] == rank, "no process named '" + rank + "'");
      std::set<std::string> names, cats;
      int collectives = 0, misplaced = 0;
      std::vector<Span> steps, optimizer_steps;
      for (const Span& s : spans) {
        if (s.pid != r) continue;
        names.insert(s.name);
        cats.insert(s.cat);
        const std::string thread = thread_names[{s.pid, s.tid}];
        if (s.cat == "collective") {
          ++collectives;
          const std::string want = nranks > 1 ? "communication" : "main";
          if (thread.rfind(want, 0) != 0) ++misplaced;
        }
        if (s.name == "step") steps.push_back(s);
        if (s.name == "optimizer step") {
          optimizer_steps.push_back(s);
          check(s.cat == "optimizer", rank + ": 'optimizer step' has category " + s.cat);
          check(thread == "main", rank + ": 'optimizer step' is on thread '" + thread + "', not main");
        }
      }
      check(collectives > 0, rank + ": no collective spans");
      check(misplaced == 0, rank + ": " + std::to_string(misplaced) + " collectives on the wrong thread");
      check(!optimizer_steps.empty(), rank + ": no optimizer step spans");
      for (const Span& o : optimizer_steps) {
        bool inside = false;
        for (const Span& s : steps) inside |= s.tid == o.tid && contains(s, o);
        check(inside, rank + ": an optimizer step outside every step span");
      }
      std::vector<std::string> phases = {"step", "forward", "backward", "clip", "parameter update"};
      if (nranks > 1) phases.push_back("reduce wait");
      for (const std::string& phase : phases) check(names.count(phase) == 1, rank + ": no '" + phase + "' span");
      for (const char* cat : {"op", "autograd", "module"})
        check(cats.count(cat) == 1, rank + ": no span of category " + std::string(cat));
      check(names.count("matmul") == 1 && names.count("matmul backward") == 1,
            rank + ": no matmul op or matmul backward span");
      std::printf("%s: %zu spans, %d collectives, %zu optimizer steps\n", rank.c_str(),
                  static_cast<size_t>(std::count_if(spans.begin(), spans.end(), [&](const Span& s) { return s.pid == r; })),
                  collectives, optimizer_steps.size());
    }
    check(process_names.size() == static_cast<size_t>(nranks),
          std::to_string(process_names.size()) + " processes, expected " + std::to_string(nranks));
  } catch (const std::exception& e) {
    std::printf("FAIL: %s\n", e.what());
    return 1;
  }
  return failures == 0 ? 0 : 1;
}
