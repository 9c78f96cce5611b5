// `shardlab bench`'s output: the head-to-head tables printed on rank 0, and bench.json /
// bench.csv (written atomically) for tools/plot_bench.py and for committing under bench/results/.
#pragma once

#include <string>
#include <vector>

#include "tools/cli/bench_measure.h"

namespace shardlab::cli {

// What the run was: recorded in the JSON next to the results.
struct BenchContext {
  std::string config_path;
  BenchOptions options;
  std::string load_before;      // /proc/loadavg before the first preset (other work slows every preset)
  std::string load_after;       // and after the last
};

// Three tables: per preset (step time, tokens/s, model state against theory, bytes per step,
// hidden fraction), per rank and memory tag (peaks), per collective kind (rank 0, per step),
// followed by what each column means.
std::string bench_tables(const std::vector<PresetResult>& results);

std::string bench_json(const std::vector<PresetResult>& results, const BenchContext& context);
// One row per (preset, rank); bytes are per rank, per step where the name says so.
std::string bench_csv(const std::vector<PresetResult>& results);

}  // namespace shardlab::cli
