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
#include "tests/support/llama_device_steps.h"

namespace shardlab::models {
namespace {

LlamaConfig tiny() { return testing::tiny_device_llama(64, 96); }

std::vector<double> train(LlamaForCausalLM& m, Device device, int steps) {
  return testing::train_on_device(m, device, steps, {1, 7, 3, 9, 4, 2, 8, 6, 5, 1, 1, 3, 44, 12, 0, 31}, {2, 8});
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
