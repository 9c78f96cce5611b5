// Float64 gradchecks for softmax and log_softmax along first, middle and last dims, on
// contiguous and non-contiguous inputs.
#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "tests/autograd/gradcheck_registry.h"

namespace shardlab::testing {
namespace {

Tensor leaf(Shape shape, uint64_t seed) { return Tensor::randn(shape, seed, DType::f64).set_requires_grad(true); }
Tensor strided_leaf(int64_t rows, int64_t cols, uint64_t seed) {
  return ops::transpose(Tensor::randn({cols, rows}, seed, DType::f64), 0, 1).set_requires_grad(true);
}
using In = const std::vector<Tensor>&;
using Out = std::vector<Tensor>;

GRADCHECK_TEST(softmax, last_dim) {
  expect_gradcheck([](In in) { return Out{softmax(in[0], -1)}; }, {leaf({3, 4}, 1)});
}
GRADCHECK_TEST(softmax, middle_dim) {
  expect_gradcheck([](In in) { return Out{softmax(in[0], 1)}; }, {leaf({2, 3, 2}, 2)});
}
GRADCHECK_TEST(softmax, non_contiguous_first_dim) {
  expect_gradcheck([](In in) { return Out{softmax(in[0], 0)}; }, {strided_leaf(3, 4, 3)});
}
GRADCHECK_TEST(softmax, large_logits) {
  // Shifted by 1000: the stable kernel must give the same (finite) gradient as without the shift.
  Tensor x = Tensor::randn({2, 3}, 4, DType::f64, 1000.0, 1.0).set_requires_grad(true);
  expect_gradcheck([](In in) { return Out{softmax(in[0], 1)}; }, {x});
}

GRADCHECK_TEST(log_softmax, last_dim) {
  expect_gradcheck([](In in) { return Out{log_softmax(in[0], 1)}; }, {leaf({3, 4}, 5)});
}
GRADCHECK_TEST(log_softmax, first_dim_of_a_transpose) {
  Tensor base = leaf({4, 3}, 6);
  expect_gradcheck([](In in) { return Out{log_softmax(transpose(in[0], 0, 1), 0)}; }, {base});
}
GRADCHECK_TEST(log_softmax, middle_dim_non_contiguous) {
  Tensor x = ops::permute(Tensor::randn({3, 2, 2}, 7, DType::f64), {1, 0, 2}).set_requires_grad(true);
  expect_gradcheck([](In in) { return Out{log_softmax(in[0], -2)}; }, {x});
}

}  // namespace
}  // namespace shardlab::testing
