// End to end on a real GPU: the tiny Llama trained for a few AdamW steps on cuda:0 follows the
// CPU run (f32: losses within 1e-4 relative, parameters within 1e-4 + 1e-3 relative after three
// steps; the kernels differ only in summation order) and keeps everything on the device.
// The same steps on the emulated device are bit-identical (tests/models/llama_device_test.cc).
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "models/llama.h"
#include "nn/optimizer.h"
#include "tests/cuda/cuda_test_util.h"

namespace shardlab::models {
namespace {

LlamaConfig tiny() {
  LlamaConfig c;
  c.vocab_size = 50;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.initializer_range = 0.2;
  return c;
}

std::vector<double> train(LlamaForCausalLM& m, Device device, int steps) {
  m.to(device);
  nn::AdamW opt(m.trainable_parameters(), 1e-2, 0.9, 0.999, 1e-8, 0.01);
  const Tensor input = Tensor::from_ints({1, 7, 3, 9, 4, 2, 8, 6, 5, 1, 1, 3, 44, 12, 0, 31}, {2, 8}).to(device);
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    auto [loss, count] = m.loss_sum({input}, input);
    Tensor mean_loss = loss * (1.0 / static_cast<double>(count));
    losses.push_back(mean_loss.item());
    opt.zero_grad();
    backward(mean_loss);
    opt.step();
  }
  return losses;
}

TEST(CudaLlama, ThreeTrainingStepsFollowTheCpu) {
  SL_SKIP_WITHOUT_CUDA();
  LlamaForCausalLM on_cpu(tiny(), 3), on_gpu(tiny(), 3);
  const std::vector<double> want = train(on_cpu, Device::cpu(), 3);
  const std::vector<double> got = train(on_gpu, Device::cuda(0), 3);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 1e-4 * std::abs(want[i])) << "loss at step " << i + 1;
  const nn::NamedTensors a = on_gpu.named_parameters(), b = on_cpu.named_parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(a[i].second.device().is_cuda()) << a[i].first;
    testing::expect_all_close(a[i].second.to_double_vector(), b[i].second.to_double_vector(), {1e-4, 1e-3}, a[i].first);
  }
}

}  // namespace
}  // namespace shardlab::models
