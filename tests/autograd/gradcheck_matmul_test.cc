// Float64 gradchecks for matmul: plain 2-D, batched with broadcast batch dims, transposed
// (non-contiguous) operands, and the Linear-layer case of a batched input times a 2-D weight.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "tests/autograd/gradcheck_registry.h"

namespace shardlab::testing {
namespace {

Tensor leaf(Shape shape, uint64_t seed) { return Tensor::randn(shape, seed, DType::f64).set_requires_grad(true); }
using In = const std::vector<Tensor>&;
using Out = std::vector<Tensor>;

GRADCHECK_TEST(matmul, two_d) {
  expect_gradcheck([](In in) { return Out{matmul(in[0], in[1])}; }, {leaf({3, 4}, 1), leaf({4, 2}, 2)});
}

GRADCHECK_TEST(matmul, batched_broadcast) {
  // a (2, 1, 3, 4) @ b (3, 4, 2) -> (2, 3, 3, 2): a's grad sums over b's batch and vice versa.
  expect_gradcheck([](In in) { return Out{matmul(in[0], in[1])}; }, {leaf({2, 1, 3, 4}, 3), leaf({3, 4, 2}, 4)});
}

GRADCHECK_TEST(matmul, two_d_a_batched_b) {
  expect_gradcheck([](In in) { return Out{matmul(in[0], in[1])}; }, {leaf({3, 4}, 5), leaf({2, 4, 2}, 6)});
}

GRADCHECK_TEST(matmul, linear_layer_batched_input_2d_weight) {
  // x (2, 3, 4) @ w (4, 5): dW folds the batch into one GEMM.
  expect_gradcheck([](In in) { return Out{matmul(in[0], in[1])}; }, {leaf({2, 3, 4}, 7), leaf({4, 5}, 8)});
}

GRADCHECK_TEST(matmul, transposed_operands) {
  // x @ W^T with W (out, in) a leaf passed through the differentiable transpose, and a
  // non-contiguous leaf (transpose of a fresh tensor) as the left operand.
  Tensor x = ops::transpose(Tensor::randn({4, 3}, 9, DType::f64), 0, 1).set_requires_grad(true);  // (3, 4)
  ASSERT_FALSE(x.is_contiguous());
  expect_gradcheck([](In in) { return Out{matmul(in[0], transpose(in[1], 0, 1))}; }, {x, leaf({5, 4}, 10)});
}

GRADCHECK_TEST(matmul, batched_transposed_attention_scores) {
  // q (2, 3, 4) @ k^T with k (2, 3, 4): both operands come from the same kind of layout.
  expect_gradcheck([](In in) { return Out{matmul(in[0], transpose(in[1], -2, -1))}; },
                   {leaf({2, 3, 4}, 11), leaf({2, 3, 4}, 12)});
}

TEST(MatmulAutograd, Bf16LinearGradsKeepDtypeAndShape) {
  // out = x @ W^T summed: dx[t, :] = sum_o W[o, :] and dW[o, :] = sum_t x[t, :] for every o.
  Tensor x = Tensor::randn({2, 3, 4}, 21, DType::bf16).set_requires_grad(true);
  Tensor w = Tensor::randn({5, 4}, 22, DType::bf16).set_requires_grad(true);
  backward(sum(matmul(x, transpose(w, 0, 1))));
  ASSERT_EQ(x.grad().dtype(), DType::bf16);
  ASSERT_EQ(x.grad().shape(), x.shape());
  ASSERT_EQ(w.grad().dtype(), DType::bf16);
  ASSERT_EQ(w.grad().shape(), w.shape());
  const std::vector<double> xv = x.to_double_vector(), wv = w.to_double_vector();
  const std::vector<double> dx = x.grad().to_double_vector(), dw = w.grad().to_double_vector();
  const Tolerance tol = tolerance("matmul", DType::bf16);
  for (int t = 0; t < 6; ++t)
    for (int k = 0; k < 4; ++k) {
      double want = 0.0;
      for (int o = 0; o < 5; ++o) want += wv[o * 4 + k];
      EXPECT_NEAR(dx[t * 4 + k], want, tol.atol + tol.rtol * std::abs(want));
    }
  for (int o = 0; o < 5; ++o)
    for (int k = 0; k < 4; ++k) {
      double want = 0.0;
      for (int t = 0; t < 6; ++t) want += xv[t * 4 + k];
      EXPECT_NEAR(dw[o * 4 + k], want, tol.atol + tol.rtol * std::abs(want));
    }
}

}  // namespace
}  // namespace shardlab::testing
