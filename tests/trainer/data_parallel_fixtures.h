// The Trainer driven by a data-parallel engine, as a check against any ProcessGroup (world size 1
// in trainer_engine_test.cc, 2 and 4 ranks under mpirun in tests/distributed/engine_ranks/): it
// matches the single-process Trainer on the global batch, and resumes exactly.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>

#include <unistd.h>

#include "distributed/data_parallel_setup.h"
#include "distributed/host_staged_process_group.h"
#include "models/llama_quantize.h"
#include "nn/lora.h"
#include "tests/trainer/trainer_fixtures.h"

namespace shardlab::train {

// Rank r of W takes rows [r*B, (r+1)*B) of each global micro batch of W*B sequences, so the union
// over ranks of micro batch k is CountingStream(W*B)'s micro batch k.
class RankStream : public BatchStream {
 public:
  RankStream(int64_t per_batch, int rank, int world) : per_batch_(per_batch), rank_(rank), world_(world) {}
  MicroBatch next() override {
    CountingStream window(per_batch_);
    window.restore(index_json((index_ * world_ + rank_) * per_batch_));
    ++index_;
    return window.next();
  }
  json::Value state() const override { return index_json(index_); }
  void restore(const json::Value& state) override { index_ = state.at("index").as_int(); }

 private:
  static json::Value index_json(int64_t i) {
    json::Value v = json::Value::object();
    v.set("index", i);
    return v;
  }
  int64_t per_batch_;
  int rank_, world_;
  int64_t index_ = 0;  // micro batches drawn
};

inline TrainerOptions dp_options(int64_t steps) {
  TrainerOptions o;
  o.max_steps = steps;
  o.gradient_accumulation_steps = 2;
  o.max_grad_norm = 1.0;
  o.schedule = {nn::LrScheduleKind::cosine, 3e-3, 1, steps};
  o.print_progress = false;
  return o;
}

// LoRA adapters on every linear layer but the head; everything else frozen (as apply_lora leaves it).
inline void add_lora(models::LlamaForCausalLM& m) {
  nn::LoraSettings s;
  s.r = 4;
  s.alpha = 8;
  s.target_linear = true;
  s.seed = 3;
  nn::apply_lora(m, s);
}

struct Variant {
  bool lora = false;
  bool qlora = false;  // LoRA over a frozen 4-bit NF4 base (the NF4 buffers are not trained)
  bool checkpointing = false;  // per-layer activation checkpointing (hooks fire in nested backwards)
  nn::LossScalerConfig scaler;  // fp16 only
  // Where the model trains (a device run's collectives go through host staging); the offloads
  // need a device.
  Device device = Device::cpu();
  bool offload_optimizer = false;
  bool offload_param = false;  // zero3 / hybrid_shard
};

// The tiny Llama trained through the engine on this rank's share of the data.
struct DataParallelTrainer {
  DataParallelTrainer(dist::ProcessGroup& group, dist::Preset preset, DType dtype, TrainerOptions options,
                      const Variant& variant = {})
      : model(tiny(), 21), data(1, group.rank(), group.size()) {
    model.to(dtype);
    if (variant.qlora) models::quantize_llama_nf4(model, dtype);
    if (variant.lora || variant.qlora) add_lora(model);
    model.set_gradient_checkpointing(variant.checkpointing);
    model.to(variant.device);
    options.device = variant.device;
    engine_group = dist::for_device(std::shared_ptr<dist::ProcessGroup>(&group, [](dist::ProcessGroup*) {}), variant.device);
    dist::DataParallelOptions o;
    o.preset = preset;
    o.offload_optimizer = variant.offload_optimizer;
    o.offload_param = variant.offload_param;
    o.reduce_bucket_size = 600;  // a handful of buckets for the ~3.6k-parameter model
    const nn::PrecisionPolicy precision = nn::make_precision_policy(dtype == DType::bf16, dtype == DType::f16);
    o.hybrid_shard_group_size = preset == dist::Preset::hybrid_shard && group.size() > 1 ? group.size() / 2 : 0;
    setup = dist::make_data_parallel(model, *engine_group, o, precision, [](std::vector<Tensor> p) {
      return std::make_unique<nn::AdamW>(std::move(p), 0.0);
    }, variant.scaler);
    trainer = std::make_unique<Trainer>(model, *setup.optimizer, data, std::move(options), std::function<double()>{},
                                        MixedPrecision{nullptr, setup.scaler.get()}, setup.engine.get());
  }
  std::vector<std::vector<double>> parameters() const {
    setup.engine->gather_full_parameters();  // zero3 / hybrid_shard: shards between uses
    std::vector<std::vector<double>> out;
    for (const Tensor& t : model.parameters()) out.push_back(t.to_double_vector());
    setup.engine->free_full_parameters();
    return out;
  }
  models::LlamaForCausalLM model;
  RankStream data;
  std::shared_ptr<dist::ProcessGroup> engine_group;  // the group, host-staged for a device
  dist::DataParallelSetup setup;
  std::unique_ptr<Trainer> trainer;
};

inline double max_abs_difference(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
  double worst = 0;
  for (size_t t = 0; t < a.size(); ++t)
    for (size_t i = 0; i < a[t].size(); ++i) worst = std::max(worst, std::abs(a[t][i] - b[t][i]));
  return worst;
}

// " + LoRA + checkpointing on cuda:0, parameters offloaded": the variant, for the test log.
inline std::string describe(const Variant& v) {
  std::string s = v.qlora ? " + QLoRA" : v.lora ? " + LoRA" : "";
  if (v.checkpointing) s += " + checkpointing";
  if (!v.device.is_cpu()) s += " on " + v.device.str();
  if (v.offload_param) s += ", parameters offloaded";
  else if (v.offload_optimizer) s += ", optimizer offloaded";
  return s;
}

// NOTE [trainer parity tolerance]: as in tests/distributed/engine_checks.h, only summation order
// differs (per-rank partial sums, a GEMM over B instead of W*B rows, the norm from bucket sums):
// ~1e-7 relative per gradient; after 4 AdamW steps at lr <= 3e-3 that stays far below 2e-5, while a
// wrong normalisation or a missing rank moves a parameter by ~lr.
inline void check_trainer_matches_single_process(dist::ProcessGroup& group, dist::Preset preset,
                                                 const Variant& variant = {}) {
  const int64_t steps = 4;
  const bool lora = variant.lora || variant.qlora;
  DataParallelTrainer dp(group, preset, DType::f32, dp_options(steps), variant);
  std::vector<double> losses, reference_losses;
  for (int64_t s = 0; s < steps; ++s) losses.push_back(dp.trainer->step().loss);
  if (lora) {  // only the adapters are bucketed; the (4-bit) base stays out of the engine
    int64_t adapters = 0;
    for (const auto& [name, t] : dp.model.named_parameters())
      if (name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos) adapters += t.numel();
    EXPECT_EQ(dp.setup.engine->trained_numel(), adapters);
  }
  models::LlamaForCausalLM ref(tiny(), 21);
  if (variant.qlora) models::quantize_llama_nf4(ref, DType::f32);
  if (lora) add_lora(ref);
  nn::AdamW opt(ref.trainable_parameters(), 0.0);
  CountingStream global(group.size());
  Trainer t(ref, opt, global, dp_options(steps));
  for (int64_t s = 0; s < steps; ++s) reference_losses.push_back(t.step().loss);
  for (int64_t s = 0; s < steps; ++s) EXPECT_NEAR(losses[s], reference_losses[s], 1e-5) << "step " << s + 1;
  std::vector<std::vector<double>> reference;
  for (const Tensor& p : ref.parameters()) reference.push_back(p.to_double_vector());
  const double diff = max_abs_difference(dp.parameters(), reference);
  EXPECT_LE(diff, 2e-5) << dist::preset_name(preset) << " on " << group.size() << " ranks";
  if (group.rank() == 0)
    std::printf("trainer parity %s%s, %d ranks: losses %.6f .. %.6f, max |param - single process| = %.3g\n",
                dist::preset_name(preset), describe(variant).c_str(), group.size(), losses.front(), losses.back(), diff);
}

// fp16 through the Trainer: a loss scale of 2^40 overflows on every rank's gradients, so step 1 is
// skipped everywhere with every parameter untouched, the scale halves in step on every rank, and
// later steps apply once the scale is small enough.
inline void check_trainer_fp16_skips_together(dist::ProcessGroup& group, dist::Preset preset) {
  Variant v;
  v.scaler.initial_scale_power = 40;
  v.scaler.hysteresis = 1;
  DataParallelTrainer dp(group, preset, DType::f16, dp_options(40), v);
  const auto before = dp.parameters();
  const StepStats first = dp.trainer->step();
  EXPECT_TRUE(first.skipped);
  EXPECT_EQ(dp.setup.scaler->scale(), std::ldexp(1.0, 39));
  EXPECT_EQ(dp.parameters(), before);
  int applied = 0;
  for (int i = 0; i < 39; ++i) applied += !dp.trainer->step().skipped;
  EXPECT_GT(applied, 0);
  // Every rank took the same decisions: the scale is a function of the skip history.
  EXPECT_EQ(dp.setup.engine->sum_across_ranks(dp.setup.scaler->scale()), group.size() * dp.setup.scaler->scale());
}

// 4 steps straight, or 2 steps + checkpoint + a fresh process state resumed for 2 more: the same
// losses and bit-identical parameters (each rank reloads its own optimizer and master shard).
inline void check_trainer_resumes_exactly(dist::ProcessGroup& group, dist::Preset preset, DType dtype,
                                          const Variant& variant = {}) {
  namespace fs = std::filesystem;
  // One directory for all ranks: named after rank 0's pid.
  const double pid = group.rank() == 0 ? static_cast<double>(::getpid()) : 0.0;
  Tensor t = Tensor::from_vector({pid}, {1}, DType::f64);
  group.all_reduce(t)->wait();
  const fs::path dir = fs::temp_directory_path() / ("shardlab_dp_resume_" + std::to_string(static_cast<int64_t>(t.item())) +
                                                    "_" + dist::preset_name(preset) + "_" + dtype_name(dtype));
  TrainerOptions o = dp_options(4);
  o.save_steps = 2;
  o.output_dir = dir.string();
  DataParallelTrainer straight(group, preset, dtype, o, variant);
  straight.trainer->run();
  for (const char* f : {"model.safetensors", "trainer_state.json"})
    EXPECT_TRUE(fs::exists(dir / "checkpoint-2" / f)) << f;
  EXPECT_TRUE(fs::exists(dir / "checkpoint-2" / ("optimizer-rank-" + std::to_string(group.rank()) + ".safetensors")));
  TrainerOptions o2 = dp_options(4);
  DataParallelTrainer resumed(group, preset, dtype, o2, variant);
  resumed.trainer->load_checkpoint((dir / "checkpoint-2").string());
  EXPECT_EQ(resumed.trainer->global_step(), 2);
  const double loss3 = resumed.trainer->step().loss, loss4 = resumed.trainer->step().loss;
  EXPECT_EQ(loss3, straight.trainer->history()[2].loss);
  EXPECT_EQ(loss4, straight.trainer->history()[3].loss);
  EXPECT_EQ(resumed.parameters(), straight.parameters());
  group.barrier()->wait();
  if (group.rank() == 0) fs::remove_all(dir);
}

}  // namespace shardlab::train
