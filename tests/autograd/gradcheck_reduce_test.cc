// Float64 gradchecks for sum, mean and max: single and multi-dim reductions, keepdim, negative
// dims and non-contiguous inputs; plus the non-differentiable argmax.
#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "tests/autograd/gradcheck_registry.h"

namespace shardlab::testing {
namespace {

Tensor leaf(Shape shape, uint64_t seed) { return Tensor::randn(shape, seed, DType::f64).set_requires_grad(true); }
// A non-contiguous leaf: a (d0, d1, d2) view permuted out of a fresh (d2, d0, d1) tensor.
Tensor strided_leaf(int64_t d0, int64_t d1, int64_t d2, uint64_t seed) {
  return ops::permute(Tensor::randn({d2, d0, d1}, seed, DType::f64), {1, 2, 0}).set_requires_grad(true);
}
using In = const std::vector<Tensor>&;
using Out = std::vector<Tensor>;

GRADCHECK_TEST(sum, all_dims) {
  expect_gradcheck([](In in) { return Out{sum(in[0])}; }, {leaf({2, 3}, 1)});
}
GRADCHECK_TEST(sum, multi_dim_negative_dims) {
  expect_gradcheck([](In in) { return Out{sum(in[0], {0, -1})}; }, {leaf({2, 3, 4}, 2)});
}
GRADCHECK_TEST(sum, keepdim_non_contiguous) {
  expect_gradcheck([](In in) { return Out{sum(in[0], {1}, true)}; }, {strided_leaf(2, 3, 4, 3)});
}
GRADCHECK_TEST(sum, through_a_transpose_of_a_leaf) {
  Tensor base = leaf({3, 4}, 4);
  expect_gradcheck([](In in) { return Out{sum(transpose(in[0], 0, 1), {0})}; }, {base});
}

GRADCHECK_TEST(mean, middle_dim) {
  expect_gradcheck([](In in) { return Out{mean(in[0], {1})}; }, {leaf({2, 3, 2}, 5)});
}
GRADCHECK_TEST(mean, multi_dim_keepdim_non_contiguous) {
  expect_gradcheck([](In in) { return Out{mean(in[0], {2, 0}, true)}; }, {strided_leaf(2, 3, 4, 6)});
}
GRADCHECK_TEST(mean, all_dims) {
  expect_gradcheck([](In in) { return Out{mean(in[0])}; }, {leaf({5}, 7)});
}

// randn values are distinct with probability 1 and far apart compared with eps, so max is
// differentiable at the test points.
GRADCHECK_TEST(max, last_dim) {
  expect_gradcheck([](In in) { return Out{max(in[0], -1)}; }, {leaf({3, 4}, 8)});
}
GRADCHECK_TEST(max, first_dim_keepdim_non_contiguous) {
  expect_gradcheck([](In in) { return Out{max(in[0], 0, true)}; }, {strided_leaf(3, 2, 4, 9)});
}

TEST(ReduceGradients, MaxGradientGoesToTheFirstMaximum) {
  Tensor x = Tensor::from_vector({1, 5, 5, 2}, {4}, DType::f64).set_requires_grad(true);
  backward(max(x, 0));
  EXPECT_EQ(x.grad().to_double_vector(), (std::vector<double>{0, 1, 0, 0}));
}

TEST(ReduceGradients, ArgmaxIsNotRecorded) {
  Tensor x = leaf({2, 3}, 10);
  Tensor i = argmax(x, 1);
  EXPECT_FALSE(i.requires_grad());
  EXPECT_EQ(i.dtype(), DType::i64);
}

TEST(ReduceGradients, GradientsHaveTheInputShapeAndDtype) {
  Tensor x = Tensor::randn({2, 3}, 11, DType::f32).set_requires_grad(true);
  backward(sum(mean(x, {1}, true)));
  EXPECT_EQ(x.grad().shape(), x.shape());
  EXPECT_EQ(x.grad().dtype(), DType::f32);
  for (double g : x.grad().to_double_vector()) EXPECT_NEAR(g, 1.0 / 3.0, 1e-7);
}

}  // namespace
}  // namespace shardlab::testing
