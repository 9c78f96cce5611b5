// Tables, JSON and CSV of `shardlab bench` (bench_report.h).
#include "tools/cli/bench_report.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <thread>

#include "core/json.h"

namespace shardlab::cli {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

std::string format(const char* fmt, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), fmt, args...);
  return buf;
}

double steps_of(const PresetResult& r) { return static_cast<double>(r.step_seconds.size()); }

// Bytes per step over every collective kind, on one rank.
double payload_per_step(const PresetResult& r, const RankFigures& f) {
  double b = 0;
  for (const dist::CollectiveStats& c : f.comm) b += static_cast<double>(c.payload_bytes);
  return b / steps_of(r);
}
double wire_per_step(const PresetResult& r, const RankFigures& f) {
  double b = 0;
  for (const dist::CollectiveStats& c : f.comm) b += static_cast<double>(c.wire_bytes);
  return b / steps_of(r);
}

// The mean over ranks that had collectives taking measurable time; NaN when none did.
double mean_hidden_fraction(const PresetResult& r) {
  double sum = 0;
  int n = 0;
  for (const RankFigures& f : r.ranks)
    if (const double h = f.hidden_fraction(); !std::isnan(h)) {
      sum += h;
      ++n;
    }
  return n > 0 ? sum / n : std::nan("");
}

int64_t max_peak(const PresetResult& r) {
  int64_t m = 0;
  for (const RankFigures& f : r.ranks) m = std::max(m, f.peak_total_bytes);
  return m;
}

json::Value number_or_null(double v) { return std::isfinite(v) ? json::Value(v) : json::Value(nullptr); }

json::Value model_state_json(const dist::ModelStateBytes& m) {
  json::Value o = json::Value::object();
  o.set("parameters", m.parameters);
  o.set("gradients", m.gradients);
  o.set("optimizer_state", m.optimizer_state);
  o.set("total", m.total());
  return o;
}

json::Value doubles(const std::vector<double>& v) {
  json::Value a = json::Value::array();
  for (double x : v) a.push_back(x);
  return a;
}

std::string first_line_of(const std::string& path, const std::string& prefix) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  return "";
}

std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace

std::string bench_tables(const std::vector<PresetResult>& results) {
  std::string out = format("%-18s %9s %10s %23s %10s %19s %7s\n", "preset", "step ms", "tokens/s",
                           "model state MiB (x th.)", "peak MiB", "MiB/step pay/wire", "hidden");
  for (const PresetResult& r : results) {
    const RankFigures& f0 = r.ranks.front();
    const double hidden = mean_hidden_fraction(r);
    out += format("%-18s %9.1f %10.0f %8.2f / %6.2f (%4.2f) %10.2f %9.2f / %7.2f %7s\n", r.preset.c_str(),
                  1e3 * r.median_step_seconds, r.tokens_per_second, f0.model_state.total() / kMiB,
                  r.theory.total() / kMiB, f0.model_state.total() / r.theory.total(),
                  static_cast<double>(max_peak(r)) / kMiB, payload_per_step(r, f0) / kMiB, wire_per_step(r, f0) / kMiB,
                  std::isnan(hidden) ? "-" : format("%.0f%%", 100 * hidden).c_str());
  }

  out += "\npeak memory per rank and ledger tag over the timed steps (MiB):\n";
  out += format("%-18s %4s", "preset", "rank");
  for (int t = 0; t < kNumMemTags; ++t) out += format(" %15s", mem_tag_name(static_cast<MemTag>(t)));
  out += format(" %10s\n", "total");
  for (const PresetResult& r : results)
    for (size_t rank = 0; rank < r.ranks.size(); ++rank) {
      const RankFigures& f = r.ranks[rank];
      out += format("%-18s %4zu", r.preset.c_str(), rank);
      for (int64_t b : f.peak_bytes) out += format(" %15.3f", static_cast<double>(b) / kMiB);
      out += format(" %10.3f\n", static_cast<double>(f.peak_total_bytes) / kMiB);
    }

  out += "\ncollectives per step (rank 0):\n";
  out += format("%-18s %-15s %8s %12s %12s %10s %10s\n", "preset", "collective", "calls", "payload MiB", "wire MiB",
                "ms", "blocked ms");
  for (const PresetResult& r : results)
    for (int k = 0; k < kNumCollectiveKinds; ++k) {
      const dist::CollectiveStats& c = r.ranks.front().comm[k];
      if (c.calls == 0) continue;
      const double n = steps_of(r);
      out += format("%-18s %-15s %8.1f %12.3f %12.3f %10.2f %10.2f\n", r.preset.c_str(),
                    dist::collective_name(static_cast<dist::CollectiveKind>(k)), static_cast<double>(c.calls) / n,
                    static_cast<double>(c.payload_bytes) / n / kMiB, static_cast<double>(c.wire_bytes) / n / kMiB,
                    1e3 * c.seconds / n, 1e3 * c.blocked_seconds / n);
    }
  out +=
      "\nstep ms: median over the timed steps of the slowest rank's step time. tokens/s: all ranks' tokens in a\n"
      "step / that median. model state: rank 0's parameters + gradients + optimizer state (fp32 masters\n"
      "included) as the engine holds them, next to the ZeRO paper's figure (x th. = measured / theory).\n"
      "peak MiB: the memory ledger's peak of all tags together, highest rank. payload: the tensors handed to\n"
      "collectives; wire: what a ring algorithm sends from this rank. hidden: 1 - (seconds callers were\n"
      "blocked in wait()) / (seconds collectives were in flight, issue to completion), mean over ranks: the\n"
      "share of communication time that overlapped compute.\n";
  return out;
}

std::string bench_json(const std::vector<PresetResult>& results, const BenchContext& context) {
  json::Value root = json::Value::object();
  root.set("bench", "shardlab bench");
  root.set("date", utc_now());
  root.set("config", context.config_path);
  json::Value machine = json::Value::object();
  machine.set("cpu_model", first_line_of("/proc/cpuinfo", "model name"));
  machine.set("nproc", static_cast<long>(std::thread::hardware_concurrency()));
  machine.set("load_before", context.load_before);
  machine.set("load_after", context.load_after);
  const char* omp = std::getenv("OMP_NUM_THREADS");
  machine.set("omp_num_threads", omp != nullptr ? omp : "");
  root.set("machine", std::move(machine));
  root.set("world_size", results.empty() ? 1 : results.front().world_size);
  root.set("warmup_steps", static_cast<long>(context.options.warmup_steps));
  root.set("timed_steps", static_cast<long>(context.options.timed_steps));
  root.set("bucket_elements", static_cast<long>(results.empty() ? 0 : results.front().bucket_elements));
  json::Value defs = json::Value::object();
  defs.set("median_step_seconds", "median over the timed steps of the slowest rank's wall time for the step");
  defs.set("tokens_per_second", "input tokens of all ranks in one optimizer step / median_step_seconds");
  defs.set("peak_bytes", "memory-ledger peak per tag over the timed steps (total: peak of the sum), per rank");
  defs.set("model_state_bytes", "parameters, gradients and optimizer state (fp32 masters included) the engine holds");
  defs.set("model_state_theory_bytes", "the ZeRO paper's per-rank model state for the preset, psi and world size");
  defs.set("collectives_per_step", "per rank and kind, divided by timed_steps: payload = tensor bytes handed to the "
                                   "collective, wire = bytes a ring algorithm sends from the rank");
  defs.set("hidden_fraction", "1 - blocked_seconds / seconds over all collectives: seconds = issue to completion, "
                              "blocked = time callers spent in wait(); the share of communication hidden behind compute");
  root.set("definitions", std::move(defs));

  json::Value presets = json::Value::array();
  for (const PresetResult& r : results) {
    json::Value p = json::Value::object();
    p.set("preset", r.preset);
    p.set("engine_preset", r.engine_preset);
    p.set("trained_parameters", static_cast<long>(r.trained_parameters));
    p.set("tokens_per_step", static_cast<long>(r.tokens_per_step));
    p.set("median_step_seconds", r.median_step_seconds);
    p.set("tokens_per_second", r.tokens_per_second);
    p.set("step_seconds", doubles(r.step_seconds));
    p.set("losses", doubles(r.losses));
    p.set("model_state_theory_bytes", model_state_json(r.theory));
    p.set("hidden_fraction", number_or_null(mean_hidden_fraction(r)));
    json::Value ranks = json::Value::array();
    for (size_t rank = 0; rank < r.ranks.size(); ++rank) {
      const RankFigures& f = r.ranks[rank];
      json::Value o = json::Value::object();
      o.set("rank", static_cast<long>(rank));
      o.set("step_seconds", doubles(f.step_seconds));
      json::Value peaks = json::Value::object();
      for (int t = 0; t < kNumMemTags; ++t) peaks.set(mem_tag_name(static_cast<MemTag>(t)), static_cast<long>(f.peak_bytes[t]));
      peaks.set("total", static_cast<long>(f.peak_total_bytes));
      o.set("peak_bytes", std::move(peaks));
      o.set("model_state_bytes", model_state_json(f.model_state));
      o.set("hidden_fraction", number_or_null(f.hidden_fraction()));
      json::Value comm = json::Value::object();
      for (int k = 0; k < kNumCollectiveKinds; ++k) {
        const dist::CollectiveStats& c = f.comm[k];
        json::Value s = json::Value::object();
        const double n = steps_of(r);
        s.set("calls", static_cast<double>(c.calls) / n);
        s.set("payload_bytes", static_cast<double>(c.payload_bytes) / n);
        s.set("wire_bytes", static_cast<double>(c.wire_bytes) / n);
        s.set("seconds", c.seconds / n);
        s.set("blocked_seconds", c.blocked_seconds / n);
        comm.set(dist::collective_name(static_cast<dist::CollectiveKind>(k)), std::move(s));
      }
      o.set("collectives_per_step", std::move(comm));
      ranks.push_back(std::move(o));
    }
    p.set("ranks", std::move(ranks));
    presets.push_back(std::move(p));
  }
  root.set("presets", std::move(presets));
  return json::dump_pretty(root) + "\n";
}

std::string bench_csv(const std::vector<PresetResult>& results) {
  std::string out = "preset,engine_preset,rank,world_size,median_step_seconds,tokens_per_second,hidden_fraction,"
                    "model_state_bytes,model_state_theory_bytes";
  for (int t = 0; t < kNumMemTags; ++t) out += std::string(",peak_") + mem_tag_name(static_cast<MemTag>(t)) + "_bytes";
  out += ",peak_total_bytes";
  for (int k = 0; k < kNumCollectiveKinds; ++k) {
    const std::string name = dist::collective_name(static_cast<dist::CollectiveKind>(k));
    out += "," + name + "_payload_bytes_per_step," + name + "_wire_bytes_per_step";
  }
  out += ",collective_seconds_per_step,blocked_seconds_per_step\n";
  for (const PresetResult& r : results)
    for (size_t rank = 0; rank < r.ranks.size(); ++rank) {
      const RankFigures& f = r.ranks[rank];
      const double h = f.hidden_fraction(), n = steps_of(r);
      out += format("%s,%s,%zu,%d,%.6f,%.1f,%s,%.0f,%.0f", r.preset.c_str(), r.engine_preset.c_str(), rank,
                    r.world_size, r.median_step_seconds, r.tokens_per_second,
                    std::isnan(h) ? "" : format("%.4f", h).c_str(), f.model_state.total(), r.theory.total());
      for (int64_t b : f.peak_bytes) out += format(",%ld", static_cast<long>(b));
      out += format(",%ld", static_cast<long>(f.peak_total_bytes));
      double seconds = 0, blocked = 0;
      for (const dist::CollectiveStats& c : f.comm) {
        out += format(",%.0f,%.0f", static_cast<double>(c.payload_bytes) / n, static_cast<double>(c.wire_bytes) / n);
        seconds += c.seconds;
        blocked += c.blocked_seconds;
      }
      out += format(",%.6f,%.6f\n", seconds / n, blocked / n);
    }
  return out;
}

}  // namespace shardlab::cli
