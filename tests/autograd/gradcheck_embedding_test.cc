// Float64 gradchecks for embedding: repeated ids (gradients add up in one row) and a
// non-contiguous weight; ids carry no gradient.
#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "tests/autograd/gradcheck_registry.h"

namespace shardlab::testing {
namespace {

using In = const std::vector<Tensor>&;
using Out = std::vector<Tensor>;

GRADCHECK_TEST(embedding, repeated_ids) {
  Tensor weight = Tensor::randn({5, 3}, 1, DType::f64).set_requires_grad(true);
  Tensor ids = Tensor::from_ints({4, 0, 4, 2, 2, 4}, {2, 3});
  expect_gradcheck([ids](In in) { return Out{embedding(in[0], ids)}; }, {weight});
}

GRADCHECK_TEST(embedding, non_contiguous_weight_i32_ids) {
  Tensor weight = ops::transpose(Tensor::randn({3, 6}, 2, DType::f64), 0, 1).set_requires_grad(true);  // (6, 3)
  ASSERT_FALSE(weight.is_contiguous());
  Tensor ids = Tensor::from_ints({5, 1, 1, 0}, {4}, DType::i32);
  expect_gradcheck([ids](In in) { return Out{embedding(in[0], ids)}; }, {weight});
}

TEST(EmbeddingAutograd, IdsGetNoGradientAndWeightGradHasItsShape) {
  Tensor weight = Tensor::randn({4, 2}, 3, DType::f32).set_requires_grad(true);
  Tensor out = embedding(weight, Tensor::from_ints({1, 1, 3}, {3}));
  EXPECT_TRUE(out.requires_grad());
  backward(sum(out));
  ASSERT_TRUE(weight.grad().defined());
  EXPECT_EQ(weight.grad().shape(), (Shape{4, 2}));
  EXPECT_EQ(weight.grad().to_double_vector(), (std::vector<double>{0, 0, 2, 2, 0, 0, 1, 1}));
}

}  // namespace
}  // namespace shardlab::testing
