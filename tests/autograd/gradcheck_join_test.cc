// Float64 gradchecks for cat, stack and split, with strided inputs; split also with pieces that
// receive no gradient (the engine zero-fills them).
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

GRADCHECK_TEST(cat, three_inputs_last_dim) {
  expect_gradcheck([](In in) { return Out{cat({in[0], in[1], in[2]}, -1)}; },
                   {leaf({2, 1}, 1), strided_leaf(2, 3, 2), leaf({2, 2}, 3)});
}
GRADCHECK_TEST(cat, first_dim_same_input_twice) {
  // The same tensor twice: its two gradient slabs accumulate.
  expect_gradcheck([](In in) { return Out{cat({in[0], in[1], in[0]}, 0)}; }, {strided_leaf(2, 3, 4), leaf({1, 3}, 5)});
}

GRADCHECK_TEST(stack, new_middle_dim) {
  expect_gradcheck([](In in) { return Out{stack({in[0], in[1]}, 1)}; }, {leaf({2, 3}, 6), strided_leaf(2, 3, 7)});
}
GRADCHECK_TEST(stack, new_last_dim) {
  expect_gradcheck([](In in) { return Out{stack({in[0], in[1], in[2]}, -1)}; },
                   {leaf({3}, 8), leaf({3}, 9), leaf({3}, 10)});
}

GRADCHECK_TEST(split, every_piece_used) {
  expect_gradcheck([](In in) { return split(in[0], 2, 1); }, {strided_leaf(2, 5, 11)});
}
GRADCHECK_TEST(split, some_pieces_unused) {
  expect_gradcheck(
      [](In in) {
        std::vector<Tensor> p = split(in[0], 1, 0);  // three pieces, the middle one unused
        return Out{p[0] * p[2]};
      },
      {leaf({3, 2}, 12)});
}

TEST(JoinGradients, SplitRecordsOneNodeForAllPieces) {
  Tensor x = leaf({4, 2}, 13);
  std::vector<Tensor> p = split(x, 3, 0);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].autograd_meta()->grad_fn, p[1].autograd_meta()->grad_fn);
  backward(sum(p[1]));
  EXPECT_EQ(x.grad().to_double_vector(), (std::vector<double>{0, 0, 0, 0, 0, 0, 1, 1}));
}

}  // namespace
}  // namespace shardlab::testing
