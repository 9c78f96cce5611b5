// `shardlab bench`'s measurement of one sharding preset: a fresh model from the config's seed,
// the same data and global batch as every other preset, W warm-up steps, then N timed steps
// whose step times, memory-ledger peaks, model state and communication ledger are gathered from
// every rank to rank 0.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/memory_ledger.h"
#include "distributed/comm_ledger.h"
#include "distributed/process_group.h"
#include "distributed/zero_theory.h"
#include "models/dataset.h"
#include "models/tokenizer.h"
#include "tools/config/train_config.h"

namespace shardlab::cli {

inline constexpr int kNumCollectiveKinds = 5;  // dist::CollectiveKind's values

// What one rank saw during the timed steps.
struct RankFigures {
  std::vector<double> step_seconds;                // per timed step, this rank's wall time
  std::array<int64_t, kNumMemTags> peak_bytes{};   // memory-ledger peak per tag over the timed steps
  int64_t peak_total_bytes = 0;                    // peak of the sum (not the sum of the peaks)
  dist::ModelStateBytes model_state;               // engine.model_state_bytes after the timed steps
  std::array<dist::CollectiveStats, kNumCollectiveKinds> comm{};  // summed over the timed steps
  // 1 - blocked / collective seconds over every collective of the timed steps: the share of the
  // time collectives were in flight that no caller spent waiting in wait() (hidden behind compute).
  // NaN when no collective took measurable time (one rank).
  double hidden_fraction() const;
};

struct PresetResult {
  std::string preset;         // as named on the command line
  std::string engine_preset;  // what it parsed to (dist::preset_name)
  int world_size = 1;
  int64_t trained_parameters = 0;  // psi
  int64_t bucket_elements = 0;     // the engine's reduce and all-gather bucket size
  int64_t tokens_per_step = 0;     // global: all ranks' input tokens in one optimizer step
  std::vector<double> losses;      // per timed step (global); equal across presets up to reduction order
  std::vector<double> step_seconds;  // per timed step: the slowest rank's time
  double median_step_seconds = 0;
  double tokens_per_second = 0;    // tokens_per_step / median_step_seconds
  dist::ModelStateBytes theory;    // the ZeRO paper's per-rank model state for this preset
  std::vector<RankFigures> ranks;  // index = rank
};

struct BenchOptions {
  int64_t warmup_steps = 2;
  int64_t timed_steps = 10;
  int64_t bucket_elements = 0;  // reduce and all-gather bucket size; 0: hidden_size^2 (DeepSpeed "auto")
  int64_t hybrid_shard_group_size = 0;  // fsdp_hybrid_shard's ranks per shard group (that preset only); 0: the engine's default
  // Non-empty: the timed steps are traced and merged across ranks into DIR/trace-<preset>.json.
  std::string trace_dir;
};

// Called on rank 0 after every step: preset, step (1-based over warm-up + timed), this rank's seconds.
using ProgressFn = std::function<void(const std::string& preset, int64_t step, double seconds)>;

// Runs `preset` on every rank of `world` (collective) and returns every rank's figures, gathered
// (the same on every rank). Everything it builds is freed before it returns, so the next preset
// starts from the same memory baseline.
PresetResult measure_preset(const std::string& preset, const config::TrainConfig& cfg, const std::string& config_path,
                            const models::Tokenizer& tokenizer, const std::vector<models::Sample>& train_samples,
                            dist::ProcessGroup& world, const BenchOptions& options, const ProgressFn& progress);

}  // namespace shardlab::cli
