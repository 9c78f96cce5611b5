// The trainer on a device: micro batches follow the model there, and a run on the emulated CUDA
// device (tests/support/emulated_cuda.h) is bit-identical to the CPU run — f32 with clipping and
// a cosine schedule, bf16 with fp32 masters, and a checkpoint saved from the device that resumes
// on the device exactly.
#include <gtest/gtest.h>

#include <filesystem>

#include <unistd.h>

#include "nn/master_weights.h"
#include "tests/support/emulated_cuda.h"
#include "tests/trainer/trainer_fixtures.h"
#include "tools/trainer/trainer.h"

namespace shardlab::train {
namespace {

namespace fs = std::filesystem;

TrainerOptions options(int64_t steps, Device device, const std::string& dir = {}) {
  TrainerOptions o;
  o.max_steps = steps;
  o.gradient_accumulation_steps = 2;
  o.max_grad_norm = 0.5;  // small enough that clipping acts
  o.schedule = {nn::LrScheduleKind::cosine, 5e-3, 1, steps};
  o.print_progress = false;
  o.device = device;
  o.output_dir = dir;
  return o;
}

std::vector<double> run(Device device, DType dtype, int64_t steps) {
  models::LlamaForCausalLM m(tiny(), 4);
  if (dtype != DType::f32) m.to(dtype);
  m.to(device);
  std::vector<Tensor> stepped = m.trainable_parameters();
  std::unique_ptr<nn::MasterWeights> masters;
  if (dtype != DType::f32) {
    masters = std::make_unique<nn::MasterWeights>(stepped);
    stepped = masters->masters();
    for (const Tensor& t : stepped) EXPECT_EQ(t.device(), device) << "fp32 masters live with the model";
  }
  nn::AdamW opt(stepped, 0.0);
  CountingStream data(2);
  Trainer t(m, opt, data, options(steps, device), {}, {masters.get(), nullptr});
  t.run();
  std::vector<double> losses;
  for (const StepStats& s : t.history()) losses.push_back(s.loss);
  for (const Tensor& p : m.parameters()) EXPECT_EQ(p.device(), device);
  return losses;
}

TEST(TrainerOnDevice, F32RunIsBitIdenticalToTheCpu) {
  testing::use_emulated_cuda();
  const std::vector<double> cpu = run(Device::cpu(), DType::f32, 4);
  EXPECT_EQ(run(Device::cuda(0), DType::f32, 4), cpu);
  testing::remove_emulated_cuda();
}

TEST(TrainerOnDevice, Bf16WithFp32MastersIsBitIdenticalToTheCpu) {
  testing::use_emulated_cuda();
  const std::vector<double> cpu = run(Device::cpu(), DType::bf16, 3);
  EXPECT_EQ(run(Device::cuda(0), DType::bf16, 3), cpu);
  testing::remove_emulated_cuda();
}

TEST(TrainerOnDevice, CheckpointFromTheDeviceResumesOnTheDeviceExactly) {
  testing::use_emulated_cuda();
  const fs::path dir = fs::temp_directory_path() / ("shardlab_trainer_device_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const Device gpu = Device::cuda(0);
  std::vector<double> uninterrupted;
  {
    models::LlamaForCausalLM m(tiny(), 4);
    m.to(gpu);
    nn::AdamW opt(m.trainable_parameters(), 0.0);
    CountingStream data(2);
    Trainer t(m, opt, data, options(4, gpu));
    t.run();
    for (const StepStats& s : t.history()) uninterrupted.push_back(s.loss);
  }
  std::string checkpoint;
  {
    models::LlamaForCausalLM m(tiny(), 4);
    m.to(gpu);
    nn::AdamW opt(m.trainable_parameters(), 0.0);
    CountingStream data(2);
    Trainer t(m, opt, data, options(4, gpu, dir.string()));
    t.step();
    t.step();
    checkpoint = t.save_checkpoint();
  }
  models::LlamaForCausalLM m(tiny(), 77);
  m.to(gpu);
  nn::AdamW opt(m.trainable_parameters(), 0.0);
  CountingStream data(2);
  Trainer t(m, opt, data, options(4, gpu, dir.string()));
  t.load_checkpoint(checkpoint);
  EXPECT_EQ(t.step().loss, uninterrupted[2]);
  EXPECT_EQ(t.step().loss, uninterrupted[3]);
  fs::remove_all(dir);
  testing::remove_emulated_cuda();
}

}  // namespace
}  // namespace shardlab::train
