// Activation checkpointing gives the same gradients as the plain run, keeps only the region's
// inputs alive between forward and backward, and recomputes the region exactly once in backward.
#include <gtest/gtest.h>

#include "autograd/checkpoint.h"
#include "autograd/functions.h"

namespace shardlab {
namespace {

// A two-matmul MLP block; `w1`, `w2` are parameters captured by the region.
std::vector<Tensor> mlp(const Tensor& x, const Tensor& w1, const Tensor& w2) {
  return {matmul(silu(matmul(x, w1)), w2)};
}

TEST(Checkpoint, GradientsMatchThePlainRunExactly) {
  auto make = [](uint64_t seed, Shape s) { return Tensor::randn(s, seed, DType::f64).set_requires_grad(true); };
  Tensor x = make(1, {4, 8}), w1 = make(2, {8, 16}), w2 = make(3, {16, 8});
  backward(sum(mlp(x, w1, w2)[0]));
  std::vector<double> gx = x.grad().to_double_vector(), g1 = w1.grad().to_double_vector(),
                      g2 = w2.grad().to_double_vector();

  Tensor cx = make(1, {4, 8}), c1 = make(2, {8, 16}), c2 = make(3, {16, 8});
  int runs = 0;
  std::vector<Tensor> out = checkpoint(
      [&](const std::vector<Tensor>& in) {
        ++runs;
        return mlp(in[0], c1, c2);
      },
      {cx});
  EXPECT_EQ(runs, 1);
  backward(sum(out[0]));
  EXPECT_EQ(runs, 2);  // recomputed once in backward
  EXPECT_EQ(cx.grad().to_double_vector(), gx);
  EXPECT_EQ(c1.grad().to_double_vector(), g1);
  EXPECT_EQ(c2.grad().to_double_vector(), g2);
}

TEST(Checkpoint, KeepsNoActivationsOfTheRegionBetweenForwardAndBackward) {
  MemoryLedger& ledger = MemoryLedger::instance();
  Tensor x = Tensor::randn({64, 256}, 1).set_requires_grad(true);
  Tensor w = Tensor::randn({256, 256}, 2).set_requires_grad(true);
  auto region = [&](const std::vector<Tensor>& in) {
    Tensor h = in[0];
    for (int i = 0; i < 4; ++i) h = silu(matmul(h, w));
    return std::vector<Tensor>{h};
  };
  const int64_t before = ledger.snapshot(Device::cpu()).live;
  Tensor plain = region({x})[0];
  const int64_t plain_kept = ledger.snapshot(Device::cpu()).live - before;
  plain = Tensor();
  const int64_t base = ledger.snapshot(Device::cpu()).live;
  Tensor ckpt = checkpoint(region, {x})[0];
  const int64_t ckpt_kept = ledger.snapshot(Device::cpu()).live - base;
  const int64_t one_activation = 64 * 256 * 4;
  // Plain: every matmul output and silu input is kept for backward (8 activations + output).
  EXPECT_GE(plain_kept, 8 * one_activation);
  // Checkpointed: only the output is alive.
  EXPECT_EQ(ckpt_kept, one_activation);
  backward(sum(ckpt));
  EXPECT_TRUE(w.grad().defined());
}

TEST(Checkpoint, UnderNoGradItIsAPlainCall) {
  NoGradGuard guard;
  Tensor x = Tensor::ones({2});
  std::vector<Tensor> out = checkpoint([](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0] * 2.0}; },
                                       {x});
  EXPECT_FALSE(out[0].requires_grad());
  EXPECT_EQ(out[0].to_double_vector(), (std::vector<double>{2, 2}));
}

}  // namespace
}  // namespace shardlab
