// One preset of `shardlab bench`, measured on every rank and gathered to rank 0 (bench_measure.h).
#include "tools/cli/bench_measure.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "core/trace.h"
#include "distributed/data_parallel_setup.h"
#include "distributed/tracing.h"
#include "models/data_loader.h"
#include "tools/cli/run_setup.h"
#include "tools/cli/train_adapter.h"
#include "tools/trainer/trainer.h"

namespace shardlab::cli {

namespace {

dist::OptimizerStateKind optimizer_state_kind(config::OptimizerKind kind) {
  switch (kind) {
    case config::OptimizerKind::sgd: return dist::OptimizerStateKind::sgd;  // optimizer_factory: no momentum
    case config::OptimizerKind::adamw_8bit: return dist::OptimizerStateKind::adamw_8bit;
    case config::OptimizerKind::adamw: break;
  }
  return dist::OptimizerStateKind::adamw;
}

double median(std::vector<double> v) {
  SL_CHECK(!v.empty(), "median of no values");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A rank's figures as one row of doubles (bytes stay exact below 2^53), so that one all-gather
// brings every rank's row to rank 0.
constexpr int64_t kCommFields = 5;  // calls, payload, wire, seconds, blocked seconds
int64_t row_length(int64_t steps) { return steps + kNumMemTags + 1 + 3 + kNumCollectiveKinds * kCommFields; }

std::vector<double> pack(const RankFigures& f) {
  std::vector<double> row = f.step_seconds;
  for (int64_t b : f.peak_bytes) row.push_back(static_cast<double>(b));
  row.push_back(static_cast<double>(f.peak_total_bytes));
  row.insert(row.end(), {f.model_state.parameters, f.model_state.gradients, f.model_state.optimizer_state});
  for (const dist::CollectiveStats& c : f.comm)
    row.insert(row.end(), {static_cast<double>(c.calls), static_cast<double>(c.payload_bytes),
                           static_cast<double>(c.wire_bytes), c.seconds, c.blocked_seconds});
  return row;
}

RankFigures unpack(const double* row, int64_t steps) {
  RankFigures f;
  f.step_seconds.assign(row, row + steps);
  const double* p = row + steps;
  for (int64_t& b : f.peak_bytes) b = static_cast<int64_t>(*p++);
  f.peak_total_bytes = static_cast<int64_t>(*p++);
  f.model_state = {p[0], p[1], p[2]};
  p += 3;
  for (dist::CollectiveStats& c : f.comm) {
    c = {static_cast<int64_t>(p[0]), static_cast<int64_t>(p[1]), static_cast<int64_t>(p[2]), p[3], p[4]};
    p += kCommFields;
  }
  return f;
}

}  // namespace

double RankFigures::hidden_fraction() const {
  double seconds = 0, blocked = 0;
  for (const dist::CollectiveStats& c : comm) {
    seconds += c.seconds;
    blocked += c.blocked_seconds;
  }
  if (seconds <= 0) return std::nan("");
  return std::clamp(1.0 - blocked / seconds, 0.0, 1.0);
}

PresetResult measure_preset(const std::string& preset, const config::TrainConfig& cfg, const std::string& config_path,
                            const models::Tokenizer& tokenizer, const std::vector<models::Sample>& train_samples,
                            dist::ProcessGroup& world, const BenchOptions& options, const ProgressFn& progress) {
  PresetResult r;
  r.preset = preset;
  dist::DataParallelOptions o;
  o.preset = dist::parse_preset(preset);
  r.engine_preset = dist::preset_name(o.preset);
  r.world_size = world.size();
  const nn::PrecisionPolicy precision = precision_from(cfg);
  RankFigures mine;
  {
    // A fresh model from the config's seed: every preset starts from the same weights.
    std::unique_ptr<models::LlamaForCausalLM> model = build_model(cfg, precision, tokenizer.vocab_size(), config_path);
    model->set_gradient_checkpointing(cfg.gradient_checkpointing);
    apply_adapter(cfg, *model);
    const int64_t hidden = model->config().hidden_size;
    r.bucket_elements = options.bucket_elements > 0 ? options.bucket_elements : hidden * hidden;
    o.reduce_bucket_size = o.allgather_bucket_size = r.bucket_elements;
    if (o.preset == dist::Preset::hybrid_shard) o.hybrid_shard_group_size = static_cast<int>(options.hybrid_shard_group_size);
    dist::DataParallelSetup dp =
        dist::make_data_parallel(*model, world, o, precision, optimizer_factory(cfg), loss_scaler_config(cfg));
    // The same batches for every preset: a loader from the same samples, seed and position 0.
    models::DataLoader loader(train_samples, loader_options(cfg, tokenizer, world.rank(), world.size()));
    LoaderStream stream(loader);
    train::TrainerOptions to;
    to.max_steps = options.warmup_steps + options.timed_steps;
    to.gradient_accumulation_steps = cfg.gradient_accumulation_steps;
    to.max_grad_norm = cfg.max_grad_norm;
    to.schedule = {nn::LrScheduleKind::constant, cfg.learning_rate, 0, to.max_steps};
    to.print_progress = false;
    train::Trainer trainer(*model, *dp.optimizer, stream, to, {}, {nullptr, dp.scaler.get()}, dp.engine.get());
    r.trained_parameters = dp.engine->trained_numel();
    for (int64_t i = 0; i < options.warmup_steps; ++i) {
      const train::StepStats s = trainer.step();
      if (progress) progress(preset, s.step, s.seconds);
    }
    // The timed steps start together, from zeroed ledgers: the barrier is the last thing counted out.
    world.barrier()->wait();
    world.ledger().reset();
    MemoryLedger::instance().reset_peaks();
    const bool tracing = !options.trace_dir.empty();
    if (tracing) trace::start();
    for (int64_t i = 0; i < options.timed_steps; ++i) {
      const train::StepStats s = trainer.step();
      mine.step_seconds.push_back(s.seconds);
      r.losses.push_back(s.loss);
      r.tokens_per_step = s.tokens;
      if (progress) progress(preset, s.step, s.seconds);
    }
    // Collective (every rank sends its spans); the ledgers below were read-only to the tracer.
    if (tracing) dist::write_merged_trace(world, options.trace_dir + "/trace-" + preset + ".json");
    for (int k = 0; k < kNumCollectiveKinds; ++k) mine.comm[k] = world.ledger().stats(static_cast<dist::CollectiveKind>(k));
    const DeviceMemory m = MemoryLedger::instance().snapshot(Device::cpu());
    for (int t = 0; t < kNumMemTags; ++t) mine.peak_bytes[t] = m.tags[t].peak;
    mine.peak_total_bytes = m.peak;
    mine.model_state = dp.engine->model_state_bytes(*dp.optimizer);
    r.theory = dp.engine->model_state_theory(optimizer_state_kind(cfg.optimizer));
  }

  const std::vector<double> row = pack(mine);
  const int64_t n = row_length(options.timed_steps);
  SL_CHECK(static_cast<int64_t>(row.size()) == n, "bench: packed ", row.size(), " figures, expected ", n);
  Tensor all = Tensor::zeros({n * world.size()}, DType::f64);
  world.all_gather(all, Tensor::from_vector(row, {n}, DType::f64))->wait();
  const std::vector<double> v = all.to_double_vector();
  for (int rank = 0; rank < world.size(); ++rank) r.ranks.push_back(unpack(v.data() + rank * n, options.timed_steps));
  for (int64_t i = 0; i < options.timed_steps; ++i) {
    double slowest = 0;
    for (const RankFigures& f : r.ranks) slowest = std::max(slowest, f.step_seconds[i]);
    r.step_seconds.push_back(slowest);
  }
  r.median_step_seconds = median(r.step_seconds);
  r.tokens_per_second = static_cast<double>(r.tokens_per_step) / r.median_step_seconds;
  return r;
}

}  // namespace shardlab::cli
