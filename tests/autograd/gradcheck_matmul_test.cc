// Float64 gradchecks for matmul: plain 2-D, batched with broadcast batch dims, transposed
// (non-contiguous) operands, and the Linear-layer case of a batched input times a 2-D weight.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace shardlab::testing
