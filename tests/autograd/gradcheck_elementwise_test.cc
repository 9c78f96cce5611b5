// Float64 gradchecks for every differentiable element-wise op: broadcasting operands (their
// gradients are summed back), non-contiguous leaves, and inputs kept positive where the op needs it.
#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "tests/autograd/gradcheck_registry.h"

namespace shardlab::testing {
namespace {

using In = const std::vector<Tensor>&;
using Out = std::vector<Tensor>;

Tensor leaf(Shape shape, uint64_t seed) { return Tensor::randn(shape, seed, DType::f64).set_requires_grad(true); }
// Values in [0.5, 2]: away from the singularities of log, sqrt, rsqrt and pow at 0.
Tensor positive_leaf(Shape shape, uint64_t seed) {
  return Tensor::rand(shape, seed, DType::f64, 0.5, 2.0).set_requires_grad(true);
}
// Non-contiguous leaves: the transpose of a fresh (cols, rows) tensor.
Tensor strided_leaf(int64_t rows, int64_t cols, uint64_t seed) {
  return ops::transpose(Tensor::randn({cols, rows}, seed, DType::f64), 0, 1).set_requires_grad(true);
}
Tensor strided_positive_leaf(int64_t rows, int64_t cols, uint64_t seed) {
  return ops::transpose(Tensor::rand({cols, rows}, seed, DType::f64, 0.5, 2.0), 0, 1).set_requires_grad(true);
}

// ---- binary ops: same shape, broadcasting both ways, non-contiguous ----

GRADCHECK_TEST(add, broadcast) {
  expect_gradcheck([](In in) { return Out{add(in[0], in[1])}; }, {leaf({2, 1, 3}, 1), leaf({4, 1}, 2)});
}
GRADCHECK_TEST(add, non_contiguous) {
  expect_gradcheck([](In in) { return Out{in[0] + in[1]}; }, {strided_leaf(3, 4, 3), leaf({3, 4}, 4)});
}
GRADCHECK_TEST(add, same_input_twice) {
  expect_gradcheck([](In in) { return Out{add(in[0], in[0])}; }, {leaf({3, 2}, 5)});
}
GRADCHECK_TEST(sub, broadcast) {
  expect_gradcheck([](In in) { return Out{sub(in[0], in[1])}; }, {leaf({4, 1}, 6), leaf({2, 1, 3}, 7)});
}
GRADCHECK_TEST(sub, non_contiguous) {
  expect_gradcheck([](In in) { return Out{in[0] - in[1]}; }, {leaf({3}, 8), strided_leaf(2, 3, 9)});
}
GRADCHECK_TEST(mul, broadcast) {
  expect_gradcheck([](In in) { return Out{mul(in[0], in[1])}; }, {leaf({2, 1, 3}, 10), leaf({4, 1}, 11)});
}
GRADCHECK_TEST(mul, non_contiguous_and_squared) {
  expect_gradcheck([](In in) { return Out{in[0] * in[1], in[0] * in[0]}; },
                   {strided_leaf(3, 2, 12), strided_leaf(3, 2, 13)});
}
GRADCHECK_TEST(mul, one_constant_operand) {
  Tensor c = Tensor::randn({2, 3}, 14, DType::f64);  // no gradient requested
  expect_gradcheck([c](In in) { return Out{mul(c, in[0])}; }, {leaf({3}, 15)});
}
GRADCHECK_TEST(div, broadcast) {
  expect_gradcheck([](In in) { return Out{div(in[0], in[1])}; }, {leaf({2, 1, 3}, 16), positive_leaf({4, 1}, 17)});
}
GRADCHECK_TEST(div, non_contiguous) {
  expect_gradcheck([](In in) { return Out{in[0] / in[1]}; }, {strided_leaf(2, 3, 18), strided_positive_leaf(2, 3, 19)});
}
GRADCHECK_TEST(pow, broadcast) {
  expect_gradcheck([](In in) { return Out{pow(in[0], in[1])}; }, {positive_leaf({2, 1, 3}, 20), leaf({4, 1}, 21)});
}
GRADCHECK_TEST(pow, non_contiguous) {
  expect_gradcheck([](In in) { return Out{pow(in[0], in[1])}; },
                   {strided_positive_leaf(3, 2, 22), strided_leaf(3, 2, 23)});
}
GRADCHECK_TEST(where, broadcast_three_ways) {
  Tensor cond = Tensor::from_ints({1, 0, 0, 1}, {4, 1}, DType::u8);
  expect_gradcheck([cond](In in) { return Out{where(cond, in[0], in[1])}; }, {leaf({1, 3}, 24), leaf({2, 1, 1}, 25)});
}
GRADCHECK_TEST(where, non_contiguous) {
  Tensor cond = ops::transpose(Tensor::from_ints({1, 0, 1, 1, 0, 0}, {2, 3}, DType::u8), 0, 1);  // (3, 2)
  expect_gradcheck([cond](In in) { return Out{where(cond, in[0], in[1])}; },
                   {strided_leaf(3, 2, 26), leaf({3, 2}, 27)});
}

// ---- scalar and unary ops: contiguous and non-contiguous ----

GRADCHECK_TEST(add_scalar, contiguous_and_strided) {
  expect_gradcheck([](In in) { return Out{add_scalar(in[0], 1.5), in[1] + 2.0}; },
                   {leaf({2, 3}, 30), strided_leaf(2, 3, 31)});
}
GRADCHECK_TEST(mul_scalar, contiguous_and_strided) {
  expect_gradcheck([](In in) { return Out{mul_scalar(in[0], -1.5), 2.5 * in[1], in[1] * 0.5}; },
                   {leaf({2, 3}, 32), strided_leaf(2, 3, 33)});
}
GRADCHECK_TEST(neg, contiguous_and_strided) {
  expect_gradcheck([](In in) { return Out{neg(in[0]), -in[1]}; }, {leaf({2, 3}, 34), strided_leaf(2, 3, 35)});
}
GRADCHECK_TEST(exp, contiguous_and_strided) {
  expect_gradcheck([](In in) { return Out{exp(in[0]), exp(in[1])}; }, {leaf({2, 3}, 36), strided_leaf(2, 3, 37)});
}
GRADCHECK_TEST(log, contiguous_and_strided) {
  expect_gradcheck([](In in) { return Out{log(in[0]), log(in[1])}; },
                   {positive_leaf({2, 3}, 38), strided_positive_leaf(2, 3, 39)});
}
GRADCHECK_TEST(sqrt, contiguous_and_strided) {
  expect_gradcheck([](In in) { return Out{sqrt(in[0]), sqrt(in[1])}; },
                   {positive_leaf({2, 3}, 40), strided_positive_leaf(2, 3, 41)});
}
GRADCHECK_TEST(rsqrt, contiguous_and_strided) {
  expect_gradcheck([](In in) { return Out{rsqrt(in[0]), rsqrt(in[1])}; },
                   {positive_leaf({2, 3}, 42), strided_positive_leaf(2, 3, 43)});
}
GRADCHECK_TEST(pow_scalar, fast_and_general_exponents) {
  // 2, 3, 0.5, -0.5 and -1 take special-cased kernels; 1.7 and 0 the general path.
  expect_gradcheck(
      [](In in) {
        Out out;
        for (double e : {2.0, 3.0, 0.5, -0.5, -1.0, 1.0, 1.7, 0.0}) out.push_back(pow_scalar(in[0], e));
        out.push_back(pow_scalar(in[1], 2.5));
        return out;
      },
      {positive_leaf({2, 3}, 44), strided_positive_leaf(2, 3, 45)});
}
GRADCHECK_TEST(tanh, contiguous_and_strided) {
  expect_gradcheck([](In in) { return Out{tanh(in[0]), tanh(in[1])}; }, {leaf({2, 3}, 46), strided_leaf(2, 3, 47)});
}
GRADCHECK_TEST(sigmoid, contiguous_and_strided) {
  expect_gradcheck([](In in) { return Out{sigmoid(in[0]), sigmoid(in[1])}; },
                   {leaf({2, 3}, 48), strided_leaf(2, 3, 49)});
}
GRADCHECK_TEST(silu, contiguous_and_strided) {
  expect_gradcheck([](In in) { return Out{silu(in[0]), silu(in[1])}; }, {leaf({2, 3}, 50), strided_leaf(2, 3, 51)});
}
GRADCHECK_TEST(gelu, contiguous_and_strided) {
  expect_gradcheck([](In in) { return Out{gelu(in[0]), gelu(in[1])}; }, {leaf({2, 3}, 52), strided_leaf(2, 3, 53)});
}

// A composite of several ops through one graph (the kind of expression layers build).
GRADCHECK_TEST(mul, composite_expression) {
  expect_gradcheck(
      [](In in) {
        Tensor x = in[0], w = in[1];
        return Out{sigmoid(x * w + 1.0) / (exp(-x) + 2.0) - tanh(w)};
      },
      {leaf({2, 3}, 54), leaf({3}, 55)});
}

}  // namespace
}  // namespace shardlab::testing
