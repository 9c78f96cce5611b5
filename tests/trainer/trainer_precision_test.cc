// 16-bit training in the trainer: bf16 parameters with fp32 masters track f32 training, resume
// bit-exactly (masters are checkpointed), and fp16 overflows skip the step without touching a
// parameter while the loss scale follows DeepSpeed's rule.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <unistd.h>

#include "tests/trainer/trainer_fixtures.h"

namespace shardlab::train {
namespace {

namespace fs = std::filesystem;

TrainerOptions plain_options(int64_t steps) {
  TrainerOptions o;
  o.max_steps = steps;
  o.gradient_accumulation_steps = 2;
  o.max_grad_norm = 1.0;
  o.schedule = {nn::LrScheduleKind::constant, 5e-3, 0, steps};
  o.print_progress = false;
  return o;
}

// Losses of `steps` steps; bf16 or f16 models train through fp32 masters.
std::vector<double> run(DType dtype, int64_t steps, const nn::LossScalerConfig* scaler_config = nullptr) {
  models::LlamaForCausalLM m(tiny(), 7);
  m.to(dtype);
  CountingStream data(2);
  std::vector<double> losses;
  if (dtype == DType::f32) {
    nn::AdamW opt(m.trainable_parameters(), 0.0);
    Trainer t(m, opt, data, plain_options(steps));
    for (int64_t i = 0; i < steps; ++i) losses.push_back(t.step().loss);
    return losses;
  }
  nn::MasterWeights masters(m.trainable_parameters());
  nn::AdamW opt(masters.masters(), 0.0);
  std::unique_ptr<nn::DynamicLossScaler> scaler;
  if (scaler_config) scaler = std::make_unique<nn::DynamicLossScaler>(*scaler_config);
  Trainer t(m, opt, data, plain_options(steps), {}, {&masters, scaler.get()});
  for (int64_t i = 0; i < steps; ++i) losses.push_back(t.step().loss);
  return losses;
}

TEST(TrainerPrecision, Bf16WithMastersTracksF32) {
  std::vector<double> f32 = run(DType::f32, 40), bf16 = run(DType::bf16, 40);
  EXPECT_LT(f32.back(), f32.front() * 0.7);  // it learns
  // bf16 rounds every activation to 8 bits of mantissa; the curves stay within a few percent.
  for (size_t i = 30; i < 40; ++i) EXPECT_NEAR(bf16[i], f32[i], 0.05 * f32[i]) << "step " << i + 1;
  std::printf("final loss f32 %.4f, bf16+masters %.4f\n", f32.back(), bf16.back());
}

TEST(TrainerPrecision, Fp16OverflowSkipsTheStepAndHalvesTheScale) {
  nn::LossScalerConfig c;
  c.initial_scale_power = 40;  // 2^40 overflows f16 gradients for certain
  c.hysteresis = 1;            // halve on every overflow
  c.loss_scale_window = 1000;
  models::LlamaForCausalLM m(tiny(), 8);
  m.to(DType::f16);
  nn::MasterWeights masters(m.trainable_parameters());
  nn::AdamW opt(masters.masters(), 0.0);
  nn::DynamicLossScaler scaler(c);
  CountingStream data(2);
  Trainer t(m, opt, data, plain_options(40), {}, {&masters, &scaler});
  std::vector<std::vector<double>> before;
  for (const Tensor& p : m.trainable_parameters()) before.push_back(p.to_double_vector());
  StepStats first = t.step();
  EXPECT_TRUE(first.skipped);
  EXPECT_EQ(first.loss_scale, std::ldexp(1.0, 40));
  EXPECT_EQ(scaler.scale(), std::ldexp(1.0, 39));
  for (size_t i = 0; i < before.size(); ++i) EXPECT_EQ(m.trainable_parameters()[i].to_double_vector(), before[i]);
  int applied = 0;
  for (int i = 0; i < 39; ++i) applied += !t.step().skipped;
  EXPECT_GT(applied, 0);  // the scale came down far enough for f16
  EXPECT_LT(scaler.scale(), std::ldexp(1.0, 24));
}

TEST(TrainerPrecision, Bf16ResumeRestoresMastersAndIsBitExact) {
  const fs::path dir = fs::temp_directory_path() / ("shardlab_precision_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto make = [&](uint64_t seed, auto&& body) {
    models::LlamaForCausalLM m(tiny(), seed);
    m.to(DType::bf16);
    nn::MasterWeights masters(m.trainable_parameters());
    nn::AdamW opt(masters.masters(), 0.0);
    CountingStream data(2);
    TrainerOptions o = plain_options(6);
    o.output_dir = dir.string();
    Trainer t(m, opt, data, o, {}, {&masters, nullptr});
    body(t);
  };
  std::vector<double> uninterrupted;
  make(1, [&](Trainer& t) {
    for (int i = 0; i < 6; ++i) uninterrupted.push_back(t.step().loss);
  });
  std::string checkpoint;
  make(1, [&](Trainer& t) {
    for (int i = 0; i < 3; ++i) t.step();
    checkpoint = t.save_checkpoint();
  });
  EXPECT_TRUE(fs::exists(fs::path(checkpoint) / "master_weights.safetensors"));
  make(99, [&](Trainer& t) {
    t.load_checkpoint(checkpoint);
    for (int i = 3; i < 6; ++i) EXPECT_EQ(t.step().loss, uninterrupted[i]) << "step " << i + 1;
  });
  fs::remove_all(dir);
}

}  // namespace
}  // namespace shardlab::train
