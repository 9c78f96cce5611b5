// The tiny-Llama training loop that the device tests share (emulated device in tests/models, a
// real GPU in tests/cuda): a few AdamW steps of next-token loss on one device, checking that the
// loss, every gradient and the optimizer's moments stay on that device.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "autograd/functions.h"
#include "models/llama.h"
#include "nn/optimizer.h"

namespace shardlab::testing {

// A tiny Llama (2 layers, 4/2 heads, vocab 50) of the given width.
inline models::LlamaConfig tiny_device_llama(int64_t hidden, int64_t intermediate) {
  models::LlamaConfig c;
  c.vocab_size = 50;
  c.hidden_size = hidden;
  c.intermediate_size = intermediate;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.initializer_range = 0.2;
  return c;
}

// Moves `m` to `device` and runs `steps` AdamW steps on `ids` (B, T); returns the losses.
inline std::vector<double> train_on_device(models::LlamaForCausalLM& m, Device device, int steps,
                                           const std::vector<int64_t>& ids, const Shape& shape) {
  m.to(device);
  nn::AdamW opt(m.trainable_parameters(), 1e-2, 0.9, 0.999, 1e-8, 0.01);
  const Tensor input = Tensor::from_ints(ids, shape).to(device);
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    auto [loss, count] = m.loss_sum({input}, input);
    Tensor mean_loss = loss * (1.0 / static_cast<double>(count));
    EXPECT_EQ(mean_loss.device(), device);
    losses.push_back(mean_loss.item());
    opt.zero_grad();
    backward(mean_loss);
    for (const Tensor& p : m.trainable_parameters()) {
      EXPECT_TRUE(p.grad().defined());
      EXPECT_EQ(p.grad().device(), device) << "a gradient was left on another device";
    }
    opt.step();
  }
  // Moments live with their parameters; the step counter is a host scalar, as in PyTorch.
  for (const auto& [name, state] : opt.state_dict())
    if (name != "step") {
      EXPECT_EQ(state.device(), device) << "optimizer state " << name;
    }
  return losses;
}

}  // namespace shardlab::testing
