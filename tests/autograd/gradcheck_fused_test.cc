// float64 gradchecks of the fused Llama ops except attention: RMSNorm, RoPE (with and without
// Llama-3 scaling, sequence and batch positions), SwiGLU and cross-entropy (every reduction).
#include "autograd/functions.h"
#include "tests/autograd/gradcheck_registry.h"

namespace shardlab {
namespace {

using shardlab::testing::expect_gradcheck;
using Ins = std::vector<Tensor>;

Tensor leaf(const Shape& shape, uint64_t seed, double stddev = 1.0) {
  Tensor t = Tensor::randn(shape, seed, DType::f64, 0.0, stddev);
  t.set_requires_grad(true);
  return t;
}

// ---- rms_norm ----
GRADCHECK_TEST(rms_norm, input_and_weight) {
  Tensor x = leaf({2, 3, 4}, 1), w = leaf({4}, 2);
  expect_gradcheck([](const Ins& in) { return Ins{rms_norm(in[0], in[1], 1e-5)}; }, {x, w});
}

GRADCHECK_TEST(rms_norm, noncontiguous_input) {
  Tensor x = ops::transpose(Tensor::randn({5, 3}, 3, DType::f64), 0, 1);  // (3, 5), strided rows
  x.set_requires_grad(true);
  Tensor w = leaf({5}, 4);
  ASSERT_FALSE(x.is_contiguous());
  expect_gradcheck([](const Ins& in) { return Ins{rms_norm(in[0], in[1], 1e-6)}; }, {x, w});
}

// ---- rope ----
GRADCHECK_TEST(rope, sequence_positions) {
  Tensor x = leaf({1, 2, 3, 4}, 5);
  Tensor pos = Tensor::from_ints({0, 2, 7}, {3});
  expect_gradcheck([pos](const Ins& in) { return Ins{rope(in[0], pos, RopeConfig{})}; }, {x});
}

GRADCHECK_TEST(rope, batch_positions_llama3_scaling_transposed_heads) {
  // D = 8 with a 1024 context puts the four frequencies in all three Llama-3 regimes.
  Tensor base = leaf({2, 3, 2, 8}, 6);  // (B, T, H, D)
  Tensor pos = Tensor::from_ints({0, 5, 900, 3, 4, 2000}, {2, 3}, DType::i32);
  RopeConfig cfg{10000.0, RopeScaling{8.0, 1.0, 4.0, 1024}};
  expect_gradcheck([pos, cfg](const Ins& in) { return Ins{rope(transpose(in[0], 1, 2), pos, cfg)}; }, {base});
}

// ---- swiglu ----
GRADCHECK_TEST(swiglu, gate_and_up) {
  Tensor g = leaf({3, 4}, 7, 2.0), u = leaf({3, 4}, 8);
  expect_gradcheck([](const Ins& in) { return Ins{swiglu(in[0], in[1])}; }, {g, u});
}

GRADCHECK_TEST(swiglu, noncontiguous_gate) {
  Tensor g = ops::transpose(Tensor::randn({4, 3}, 9, DType::f64, 0.0, 2.0), 0, 1);  // (3, 4)
  g.set_requires_grad(true);
  Tensor u = leaf({3, 4}, 10);
  ASSERT_FALSE(g.is_contiguous());
  expect_gradcheck([](const Ins& in) { return Ins{swiglu(in[0], in[1])}; }, {g, u});
}

// ---- cross_entropy ----
GRADCHECK_TEST(cross_entropy, mean_with_ignored_targets) {
  Tensor logits = leaf({4, 5}, 11, 2.0);
  Tensor targets = Tensor::from_ints({1, -100, 4, 0}, {4});
  expect_gradcheck([targets](const Ins& in) { return Ins{cross_entropy(in[0], targets, -100, Reduction::mean)}; },
                   {logits});
}

GRADCHECK_TEST(cross_entropy, sum_noncontiguous_logits) {
  Tensor logits = ops::transpose(Tensor::randn({5, 3}, 12, DType::f64), 0, 1);  // (3, 5)
  logits.set_requires_grad(true);
  Tensor targets = Tensor::from_ints({2, 0, 4}, {3}, DType::i32);
  expect_gradcheck([targets](const Ins& in) { return Ins{cross_entropy(in[0], targets, -100, Reduction::sum)}; },
                   {logits});
}

GRADCHECK_TEST(cross_entropy, none) {
  Tensor logits = leaf({3, 4}, 13);
  Tensor targets = Tensor::from_ints({3, 1, -100}, {3});
  expect_gradcheck([targets](const Ins& in) { return Ins{cross_entropy(in[0], targets, -100, Reduction::none)}; },
                   {logits});
}

}  // namespace
}  // namespace shardlab
