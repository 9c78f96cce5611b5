// A training step on a device runs entirely through the op table: the tiny Llama moved to an
// emulated CUDA device (tests/support/emulated_cuda.h: host memory, CPU kernels behind the
// device slots) trains bit-identically to the CPU model, with parameters, gradients, optimizer
// state and activations all on the device. A real GPU run of the same steps is in tests/cuda/.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "core/memory_ledger.h"
#include "models/llama.h"
#include "nn/optimizer.h"
#include "nn/master_weights.h"
#include "nn/optimizer_8bit.h"
#include "tests/support/emulated_cuda.h"
#include "tests/support/llama_device_steps.h"

namespace shardlab::models {
namespace {

using ::testing::HasSubstr;

LlamaConfig tiny() { return testing::tiny_device_llama(16, 24); }

std::vector<double> train(LlamaForCausalLM& m, Device device, int steps) {
  return testing::train_on_device(m, device, steps, {1, 7, 3, 9, 4, 2, 8, 6, 5, 1, 1, 3}, {2, 6});
}

TEST(LlamaOnDevice, TrainsBitIdenticallyToTheCpuWithEverythingOnTheDevice) {
  testing::use_emulated_cuda();
  LlamaForCausalLM on_cpu(tiny(), 11), on_gpu(tiny(), 11);
  const std::vector<double> cpu_losses = train(on_cpu, Device::cpu(), 3);
  const std::vector<double> gpu_losses = train(on_gpu, Device::cuda(0), 3);
  EXPECT_EQ(gpu_losses, cpu_losses);
  EXPECT_LT(cpu_losses.back(), cpu_losses.front());
  const nn::NamedTensors want = on_cpu.named_parameters(), got = on_gpu.named_parameters();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].second.device(), Device::cuda(0)) << got[i].first;
    EXPECT_EQ(got[i].second.to_double_vector(), want[i].second.to_double_vector()) << got[i].first;
  }
  // The device's ledger holds the model's parameters under their tag.
  int64_t param_bytes = 0;
  for (const auto& [name, p] : got) param_bytes += p.nbytes();
  EXPECT_GE(MemoryLedger::instance().snapshot(Device::cuda(0))[MemTag::parameter].live, param_bytes);
  testing::remove_emulated_cuda();
}

TEST(LlamaOnDevice, EightBitAdamWKeepsItsCodesOnTheDeviceAndMatchesTheCpu) {
  testing::use_emulated_cuda();
  auto run = [](Device device) {
    LlamaForCausalLM m(tiny(), 12);
    m.to(device);
    nn::AdamW8bit opt(m.trainable_parameters(), 1e-2, 0.9, 0.999, 1e-8, 0.0);
    const Tensor input = Tensor::from_ints({3, 1, 4, 1, 5, 9, 2, 6}, {1, 8}).to(device);
    std::vector<double> losses;
    for (int step = 0; step < 3; ++step) {
      auto [loss, count] = m.loss_sum({input}, input);
      Tensor mean_loss = loss * (1.0 / static_cast<double>(count));
      losses.push_back(mean_loss.item());
      opt.zero_grad();
      backward(mean_loss);
      opt.step();
    }
    for (const auto& [name, state] : opt.state_dict())
      if (name != "step") {
        EXPECT_EQ(state.device(), device) << name;
      }
    return losses;
  };
  EXPECT_EQ(run(Device::cuda(0)), run(Device::cpu()));
  testing::remove_emulated_cuda();
}

// fp16 overflow on a device: the masters' gradients are unscaled there and one host read decides
// the step for the whole model (an inf in any tensor is seen).
TEST(LlamaOnDevice, MasterWeightsFindAnOverflowInAnyTensorWithOneRead) {
  testing::use_emulated_cuda();
  const Device gpu = Device::cuda(0);
  std::vector<Tensor> params = {Tensor::zeros({3}, DType::f16).to(gpu), Tensor::zeros({2, 2}, DType::f16).to(gpu)};
  for (Tensor& p : params) p.set_requires_grad(true);
  nn::MasterWeights masters(params);
  params[0].set_grad(Tensor::from_vector({1, 2, 3}, {3}, DType::f16).to(gpu));
  params[1].set_grad(Tensor::from_vector({4, 5, 6, 8}, {2, 2}, DType::f16).to(gpu));
  EXPECT_FALSE(masters.grads_to_masters(0.5));
  EXPECT_EQ(masters.masters()[1].grad().device(), gpu);
  EXPECT_EQ(masters.masters()[1].grad().to_double_vector(), (std::vector<double>{2, 2.5, 3, 4}));
  params[0].set_grad(Tensor::from_vector({1, 2, 3}, {3}, DType::f16).to(gpu));
  params[1].set_grad(Tensor::from_vector({4, INFINITY, 6, 8}, {2, 2}, DType::f16).to(gpu));
  EXPECT_TRUE(masters.grads_to_masters(0.5)) << "an inf in the second tensor must skip the step";
  testing::remove_emulated_cuda();
}

TEST(LlamaOnDevice, HostCodeCannotReadDeviceMemoryThroughData) {
  testing::use_emulated_cuda();
  const Tensor t = Tensor::ones({4}).to(Device::cuda(0));
  try {
    (void)t.data<float>();
    FAIL() << "data<float>() on a device tensor did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("data<f32>() called on a tensor on cuda:0"));
  }
  EXPECT_EQ(t.to_double_vector(), std::vector<double>(4, 1.0));
  testing::remove_emulated_cuda();
}

}  // namespace
}  // namespace shardlab::models
