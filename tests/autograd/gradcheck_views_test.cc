// Float64 gradchecks for the view and layout ops, on contiguous and non-contiguous inputs.
#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "tests/autograd/gradcheck_registry.h"

namespace shardlab::testing {
namespace {

Tensor leaf(Shape shape, uint64_t seed) { return Tensor::randn(shape, seed, DType::f64).set_requires_grad(true); }
// A non-contiguous leaf: the transpose of a fresh (cols, rows) tensor.
Tensor strided_leaf(int64_t rows, int64_t cols, uint64_t seed) {
  return ops::transpose(Tensor::randn({cols, rows}, seed, DType::f64), 0, 1).set_requires_grad(true);
}
using In = const std::vector<Tensor>&;
using Out = std::vector<Tensor>;

// Multiplying by a fixed non-uniform tensor makes the test sensitive to where each gradient lands.
Tensor weigh(const Tensor& t) { return t * Tensor::randn(t.shape(), 99, DType::f64); }

GRADCHECK_TEST(view, merges_and_splits) {
  expect_gradcheck([](In in) { return Out{weigh(view(in[0], {3, 2, 2}))}; }, {leaf({2, 6}, 1)});
}
GRADCHECK_TEST(reshape, non_contiguous_input_copies) {
  expect_gradcheck([](In in) { return Out{weigh(reshape(in[0], {6}))}; }, {strided_leaf(2, 3, 2)});
}
GRADCHECK_TEST(transpose, last_two_dims) {
  expect_gradcheck([](In in) { return Out{weigh(transpose(in[0], 1, 2))}; }, {leaf({2, 3, 2}, 3)});
}
GRADCHECK_TEST(permute, three_dims) {
  expect_gradcheck([](In in) { return Out{weigh(permute(in[0], {2, 0, 1}))}; }, {leaf({2, 3, 4}, 4)});
}
GRADCHECK_TEST(narrow, middle_columns_of_a_strided_input) {
  expect_gradcheck([](In in) { return Out{weigh(narrow(in[0], 1, 1, 2))}; }, {strided_leaf(3, 4, 5)});
}
GRADCHECK_TEST(slice, stepped) {
  expect_gradcheck([](In in) { return Out{weigh(slice(in[0], 0, 1, 6, 2))}; }, {leaf({6, 2}, 6)});
}
GRADCHECK_TEST(expand, broadcast_dims_sum_back) {
  expect_gradcheck([](In in) { return Out{weigh(expand(in[0], {2, 3, 4}))}; }, {leaf({3, 1}, 7)});
}
GRADCHECK_TEST(unsqueeze, middle) {
  expect_gradcheck([](In in) { return Out{weigh(unsqueeze(in[0], 1))}; }, {strided_leaf(2, 3, 8)});
}
GRADCHECK_TEST(squeeze, size_one_dim) {
  expect_gradcheck([](In in) { return Out{weigh(squeeze(in[0], 1))}; }, {leaf({3, 1, 2}, 9)});
}
GRADCHECK_TEST(contiguous, of_a_transpose) {
  expect_gradcheck([](In in) { return Out{weigh(contiguous(in[0]))}; }, {strided_leaf(3, 2, 10)});
}
GRADCHECK_TEST(clone, identity_gradient) {
  expect_gradcheck([](In in) { return Out{weigh(clone(in[0]))}; }, {leaf({4}, 11)});
}
GRADCHECK_TEST(to_dtype, round_trip_through_f32_is_identity_for_the_gradient) {
  // f64 -> f64 is an alias; the gradient of a cast is the cast of the gradient.
  expect_gradcheck([](In in) { return Out{weigh(to_dtype(in[0], DType::f64))}; }, {leaf({3}, 12)});
}

TEST(ViewGradients, CastGradientReturnsInTheInputDtype) {
  Tensor x = Tensor::from_vector({1, 2}, {2}, DType::f64).set_requires_grad(true);
  Tensor y = to_dtype(x, DType::f32);
  backward(sum(mul(y, y)));
  EXPECT_EQ(x.grad().dtype(), DType::f64);
  EXPECT_EQ(x.grad().to_double_vector(), (std::vector<double>{2, 4}));
}

}  // namespace
}  // namespace shardlab::testing
