// shardlab bench CONFIG.yaml --presets ddp,zero1,zero2,...: the sharding presets head-to-head on
// the config's model, data and global batch, in the same processes (run it under mpirun for N
// ranks). Per preset: step time, tokens/s, per-rank peak memory by ledger tag, model state next to
// the ZeRO paper's theory, bytes per collective per step and the share of communication hidden
// behind compute; printed as tables and written to bench.json and bench.csv for tools/plot_bench.py.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/atomic_file.h"
#include "distributed/init.h"
#include "distributed/sharding_plan.h"
#include "tools/cli/args.h"
#include "tools/cli/bench_measure.h"
#include "tools/cli/bench_report.h"
#include "tools/cli/commands.h"
#include "tools/cli/run_setup.h"
#include "tools/config/train_config.h"

namespace shardlab::cli {

namespace fs = std::filesystem;

namespace {

// The comma-separated preset names, each checked by the engine's own parser, so that whatever
// sharding_plan.h accepts can be benchmarked and anything else fails before a model is built.
std::vector<std::string> parse_preset_list(const std::string& text) {
  std::vector<std::string> names;
  std::stringstream in(text);
  for (std::string name; std::getline(in, name, ',');) {
    SL_CHECK(!name.empty(), "--presets '", text, "': empty preset name");
    try {
      dist::parse_preset(name);
    } catch (const Error& e) {
      SL_FAIL("--presets: ", e.what());
    }
    names.push_back(name);
  }
  SL_CHECK(!names.empty(), "--presets: give at least one preset, e.g. --presets ddp,zero1,zero2");
  return names;
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

}  // namespace

int run_bench(const std::vector<std::string>& argv) {
  Args args("bench", {{"presets", true}, {"steps", true}, {"warmup", true}, {"bucket-elements", true},
                        {"hybrid-group-size", true}, {"out", true}, {"trace", false}},
            argv);
  SL_CHECK(args.positional().size() == 1, "shardlab bench: expected one CONFIG.yaml, got ", args.positional().size(),
           " arguments");
  const std::string config_path = args.positional()[0];
  const std::vector<std::string> presets = parse_preset_list(args.required("presets"));
  BenchOptions options;
  options.timed_steps = args.get_int("steps", 10);
  options.warmup_steps = args.get_int("warmup", 2);
  options.bucket_elements = args.get_int("bucket-elements", 0);
  options.hybrid_shard_group_size = args.get_int("hybrid-group-size", 0);
  SL_CHECK(options.timed_steps >= 1, "--steps must be at least 1, got ", options.timed_steps);
  SL_CHECK(options.warmup_steps >= 0, "--warmup must not be negative, got ", options.warmup_steps);
  SL_CHECK(options.bucket_elements >= 0, "--bucket-elements must not be negative, got ", options.bucket_elements);
  SL_CHECK(options.hybrid_shard_group_size >= 0, "--hybrid-group-size must not be negative, got ",
           options.hybrid_shard_group_size);
  if (args.has("hybrid-group-size")) {
    bool hybrid = false;
    for (const std::string& p : presets) hybrid |= dist::parse_preset(p) == dist::Preset::hybrid_shard;
    SL_CHECK(hybrid, "--hybrid-group-size applies to fsdp_hybrid_shard, which --presets does not name");
  }
  const fs::path out_dir = args.get("out", "out/bench");
  if (args.has("trace")) {
    options.trace_dir = out_dir.string();
    fs::create_directories(out_dir);  // every rank may get here first; the traces are written by rank 0
  }

  const config::TrainConfig cfg = config::resolve_auto(config::load_train_config(config_path), config::RuntimeCaps{});
  SL_CHECK(cfg.device != config::DeviceKind::cuda, config_path, ": device cuda: benchmarking on CUDA is not supported yet");
  dist::InitOptions init;
  init.timeout = std::chrono::seconds(cfg.distributed.ddp_timeout_seconds);
  const std::shared_ptr<dist::ProcessGroup> world = dist::init_process_group(init);
  const bool rank0 = world->rank() == 0;
  const std::string load_before = load_average();

  const auto tokenizer = make_tokenizer(cfg);
  const TrainingData data = load_training_data(cfg, *tokenizer, config_path);
  const int64_t global_rows = cfg.micro_batch_size * cfg.gradient_accumulation_steps * world->size();
  if (rank0) {
    std::printf("# shardlab bench %s: world size %d (%s), %zu presets, %ld warm-up + %ld timed steps each\n"
                "# global batch: %ld sequences x %ld tokens (micro_batch_size %ld x gradient_accumulation_steps %ld x "
                "world size %d); %s\n",
                config_path.c_str(), world->size(), world->backend_name().c_str(), presets.size(),
                static_cast<long>(options.warmup_steps), static_cast<long>(options.timed_steps),
                static_cast<long>(global_rows), static_cast<long>(cfg.sequence_len),
                static_cast<long>(cfg.micro_batch_size), static_cast<long>(cfg.gradient_accumulation_steps),
                world->size(), precision_from(cfg).describe().c_str());
    std::fflush(stdout);
  }

  // Progress on rank 0: each step's time and an ETA from the mean step time so far.
  const int64_t steps_per_preset = options.warmup_steps + options.timed_steps;
  const int64_t total_steps = steps_per_preset * static_cast<int64_t>(presets.size());
  int64_t steps_done = 0;
  double seconds_so_far = 0;
  size_t preset_index = 0;
  const ProgressFn progress = [&](const std::string& preset, int64_t step, double seconds) {
    ++steps_done;
    seconds_so_far += seconds;
    const double eta = seconds_so_far / static_cast<double>(steps_done) * static_cast<double>(total_steps - steps_done);
    std::printf("[%zu/%zu] %-18s step %3ld/%ld %-7s %8.1f ms   ETA %.0f s\n", preset_index + 1, presets.size(),
                preset.c_str(), static_cast<long>(step), static_cast<long>(steps_per_preset),
                step <= options.warmup_steps ? "warm-up" : "timed", 1e3 * seconds, eta);
    std::fflush(stdout);
  };

  std::vector<PresetResult> results;
  for (preset_index = 0; preset_index < presets.size(); ++preset_index)
    results.push_back(measure_preset(presets[preset_index], cfg, config_path, *tokenizer, data.split.train, *world,
                                     options, rank0 ? progress : ProgressFn{}));
  if (!rank0) return 0;

  std::printf("\n%s", bench_tables(results).c_str());
  const BenchContext context{config_path, options, load_before, load_average()};
  fs::create_directories(out_dir);
  write_file_atomic((out_dir / "bench.json").string(), bench_json(results, context));
  write_file_atomic((out_dir / "bench.csv").string(), bench_csv(results));
  std::printf("\nwrote %s and %s (charts: python3 tools/plot_bench.py %s)\n", (out_dir / "bench.json").c_str(),
              (out_dir / "bench.csv").c_str(), (out_dir / "bench.json").c_str());
  return 0;
}

}  // namespace shardlab::cli
