// shardlab simulate CONFIG.yaml --cluster CLUSTER.yaml: predicted step time and per-device memory
// per sharding preset (tools/estimator), and `--calibrate-comm` (under mpirun): an all-reduce sweep
// on this machine fitted to the alpha-beta model, for a cluster file's link figures.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "core/error.h"
#include "distributed/init.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"
#include "tools/config/train_config.h"
#include "tools/estimator/from_train_config.h"
#include "tools/estimator/memory_estimate.h"
#include "tools/estimator/step_time_model.h"

namespace shardlab::cli {

namespace {

// Median seconds of `reps` all-reduces of `bytes` (f32) after one warm-up, averaged over the ranks.
double time_all_reduce(dist::ProcessGroup& world, int64_t bytes, int reps) {
  Tensor t = Tensor::zeros({std::max<int64_t>(1, bytes / 4)}, DType::f32);
  world.all_reduce(t)->wait();
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    world.barrier()->wait();
    const auto start = std::chrono::steady_clock::now();
    world.all_reduce(t)->wait();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  Tensor slowest = Tensor::from_vector({times[times.size() / 2]}, {1}, DType::f64);
  world.all_reduce(slowest, dist::ReduceOp::avg)->wait();
  return slowest.to_double_vector()[0];
}

// Fit of t = 2(n-1) alpha + 2(n-1)/n * bytes / beta over the sweep, least squares on the RELATIVE
// error (weights 1/t^2): the sizes span 4 KiB..64 MiB, so a plain fit is decided by the largest,
// noisiest times and can leave the small-message latency negative or the bandwidth off by 10x.
int calibrate_comm(int reps) {
  const std::shared_ptr<dist::ProcessGroup> world = dist::init_process_group();
  const int n = world->size();
  SL_CHECK(n >= 2, "shardlab simulate --calibrate-comm: run it under mpirun with at least 2 ranks");
  std::vector<double> xs, ys;
  for (int64_t bytes = 4096; bytes <= (int64_t{64} << 20); bytes *= 4) {
    xs.push_back(2.0 * (n - 1) / n * static_cast<double>(bytes));
    ys.push_back(time_all_reduce(*world, bytes, reps));
    if (world->rank() == 0) std::printf("all_reduce %10ld B  %10.1f us\n", static_cast<long>(bytes), ys.back() * 1e6);
  }
  const estimate::LinearFit fit = estimate::fit_relative(xs, ys);
  const double slope = fit.slope, intercept = fit.intercept;
  if (world->rank() == 0) {
    for (size_t i = 0; i < xs.size(); ++i)
      std::printf("# fitted %10.0f wire B  %10.1f us  (measured %10.1f us, %+5.1f%%)\n", xs[i],
                  (intercept + slope * xs[i]) * 1e6, ys[i] * 1e6, 100 * ((intercept + slope * xs[i]) / ys[i] - 1));
  }
  if (world->rank() == 0)
    std::printf("# fit over %d ranks: latency_us %.2f  bandwidth_GBps %.3f  (alpha = intercept / 2(n-1), beta = 1 / slope; fit on relative error)\n",
                n, std::max(0.0, intercept) / (2.0 * (n - 1)) * 1e6, 1.0 / slope / 1e9);
  return 0;
}

}  // namespace

int run_simulate(const std::vector<std::string>& argv) {
  Args args("simulate",
            {{"cluster", true}, {"presets", true}, {"world-size", true}, {"hybrid-group", true},
             {"accumulation", true}, {"bucket-elements", true}, {"calibrate-comm", false}, {"reps", true},
             {"verbose", false}},
            argv);
  if (args.has("calibrate-comm")) return calibrate_comm(static_cast<int>(args.get_int("reps", 20)));
  SL_CHECK(args.positional().size() == 1, "shardlab simulate: expected one CONFIG.yaml, got ",
           args.positional().size(), " arguments");
  const std::string config_path = args.positional()[0];
  const config::TrainConfig cfg = config::load_train_config(config_path);
  const estimate::ClusterConfig cluster = estimate::load_cluster_config(args.required("cluster"));
  estimate::EstimateSetup base = estimate::setup_from_config(
      cfg, estimate::model_config_of(cfg, config_path), dist::Preset::ddp,
      static_cast<int>(args.get_int("world-size", cluster.world_size())), 0, false, false,
      args.get_int("bucket-elements", 0), 1);
  base.hybrid_group_size = static_cast<int>(args.get_int("hybrid-group", cluster.gpus_per_node));
  const int accumulation = static_cast<int>(args.get_int("accumulation", cfg.gradient_accumulation_steps));
  std::printf("# shardlab simulate %s on %s: world size %d (%d per node), peak %.3f TFLOP/s x efficiency %.3f\n"
              "# compute = FLOPs / (peak x efficiency); FLOPs/token = 6 x weight-GEMM params (4 frozen + 6 adapter) + "
              "attention 6 T Hq d L (+ one forward with checkpointing)\n",
              config_path.c_str(), cluster.name.c_str(), base.world_size, cluster.gpus_per_node, cluster.peak_tflops,
              cluster.compute_efficiency);
  std::printf("%-20s %12s %12s %12s %12s %12s %14s\n", "preset", "step s", "compute s", "comm s", "exposed s",
              "GFLOP/rank", "memory GiB");
  std::string list = args.get("presets", "ddp,zero1,zero2,zero3,fsdp_hybrid_shard");
  for (size_t start = 0; start <= list.size();) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string name = list.substr(start, comma - start);
    start = comma + 1;
    estimate::EstimateSetup setup = base;
    setup.preset = dist::parse_preset(name);
    if (setup.preset != dist::Preset::hybrid_shard) setup.hybrid_group_size = 0;
    else setup.hybrid_group_size = std::min(setup.hybrid_group_size, setup.world_size);
    const estimate::StepPrediction p = estimate::predict_step(setup, cluster, accumulation);
    const estimate::MemoryEstimate m = estimate::estimate_memory(setup);
    const double gib = m.device_total() / (1024.0 * 1024.0 * 1024.0);
    std::printf("%-20s %12.6f %12.6f %12.6f %12.6f %12.3f %14.3f%s\n", name.c_str(), p.step_seconds, p.compute_seconds,
                p.comm_seconds, p.exposed_comm_seconds, p.flops / 1e9, gib,
                cluster.memory_gib > 0 && gib > cluster.memory_gib ? "  (does not fit)" : "");
    if (args.has("verbose"))
      for (const estimate::CollectiveTime& c : p.collectives)
        std::printf("#   %-26s %12.6f s (overlappable %.6f)\n", c.what.c_str(), c.seconds, c.overlappable);
  }
  std::printf("# overlap: bucketed reductions hide behind backward (2/3 of compute) but the last bucket; forward\n"
              "#   all-gathers behind forward but the first unit; ZeRO-1/2 parameter all-gather and hybrid's\n"
              "#   cross-group all-reduce are exposed. Ring alpha-beta: all-reduce 2(n-1)a + 2(n-1)/n B/b,\n"
              "#   reduce-scatter / all-gather (n-1)a + (n-1)/n B/b; groups beyond one node use the inter-node link.\n");
  return 0;
}

}  // namespace shardlab::cli
