// cat and stack (plus split round trips) with hand-checked values, strided inputs and the errors
// for mismatched shapes, dtypes and dims.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/ops.h"

namespace shardlab {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string message_of(const std::function<void()>& fn) {
  try { fn(); } catch (const Error& e) { return e.what(); }
  return "no error";
}

TEST(Join, CatAlongEachDim) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4}, {2, 2});
  Tensor b = Tensor::from_vector({5, 6}, {1, 2});
  Tensor c = Tensor::from_vector({7, 8}, {2, 1});
  Tensor r0 = ops::cat({a, b}, 0);
  EXPECT_EQ(r0.shape(), (Shape{3, 2}));
  EXPECT_EQ(r0.to_double_vector(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  Tensor r1 = ops::cat({a, c, a}, -1);
  EXPECT_EQ(r1.shape(), (Shape{2, 5}));
  EXPECT_EQ(r1.to_double_vector(), (std::vector<double>{1, 2, 7, 1, 2, 3, 4, 8, 3, 4}));
}

TEST(Join, CatOfStridedAndEmptyInputs) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64);
  Tensor at = ops::transpose(a, 0, 1);  // (3, 2): [[1, 4], [2, 5], [3, 6]]
  ASSERT_FALSE(at.is_contiguous());
  Tensor empty = Tensor::zeros({3, 0}, DType::f64);
  Tensor r = ops::cat({at, empty, ops::slice(at, 1, 1, 2)}, 1);
  EXPECT_EQ(r.shape(), (Shape{3, 3}));
  EXPECT_EQ(r.to_double_vector(), (std::vector<double>{1, 4, 4, 2, 5, 5, 3, 6, 6}));
  // A single input comes back as a fresh copy, not the input itself.
  Tensor one = ops::cat({a}, 0);
  EXPECT_FALSE(one.is_same(a));
  EXPECT_EQ(one.to_double_vector(), a.to_double_vector());
}

TEST(Join, LargeCatMatchesElementByElement) {
  Tensor a = Tensor::randn({64, 300}, 1, DType::bf16);
  Tensor b = Tensor::randn({64, 200}, 2, DType::bf16);
  Tensor r = ops::cat({a, b}, 1);
  std::vector<double> av = a.to_double_vector(), bv = b.to_double_vector(), rv = r.to_double_vector();
  for (int64_t i = 0; i < 64; ++i) {
    for (int64_t j = 0; j < 300; ++j) ASSERT_EQ(rv[i * 500 + j], av[i * 300 + j]);
    for (int64_t j = 0; j < 200; ++j) ASSERT_EQ(rv[i * 500 + 300 + j], bv[i * 200 + j]);
  }
}

TEST(Join, StackAddsADim) {
  Tensor a = Tensor::from_vector({1, 2, 3}, {3});
  Tensor b = Tensor::from_vector({4, 5, 6}, {3});
  Tensor s0 = ops::stack({a, b}, 0);
  EXPECT_EQ(s0.shape(), (Shape{2, 3}));
  EXPECT_EQ(s0.to_double_vector(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  Tensor s1 = ops::stack({a, b}, -1);
  EXPECT_EQ(s1.shape(), (Shape{3, 2}));
  EXPECT_EQ(s1.to_double_vector(), (std::vector<double>{1, 4, 2, 5, 3, 6}));
  Tensor scalars = ops::stack({Tensor::scalar(7), Tensor::scalar(8)}, 0);
  EXPECT_EQ(scalars.shape(), (Shape{2}));
  EXPECT_EQ(scalars.to_double_vector(), (std::vector<double>{7, 8}));
}

TEST(Join, SplitThenCatRoundTrips) {
  Tensor x = Tensor::randn({4, 7, 3}, 5, DType::f32);
  for (int64_t dim : {0, 1, -1}) {
    std::vector<Tensor> parts = ops::split(x, 2, dim);
    EXPECT_EQ(ops::cat(parts, dim).to_double_vector(), x.to_double_vector()) << "dim " << dim;
  }
  std::vector<Tensor> parts = ops::split_sizes(x, {1, 4, 2}, 1);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[1].shape(), (Shape{4, 4, 3}));
  EXPECT_EQ(ops::cat(parts, 1).to_double_vector(), x.to_double_vector());
  // stack then split along the new dim gives back the inputs.
  Tensor a = Tensor::randn({2, 3}, 6), b = Tensor::randn({2, 3}, 7);
  std::vector<Tensor> back = ops::split(ops::stack({a, b}, 1), 1, 1);
  EXPECT_EQ(ops::squeeze(back[0], 1).to_double_vector(), a.to_double_vector());
  EXPECT_EQ(ops::squeeze(back[1], 1).to_double_vector(), b.to_double_vector());
}

TEST(Join, BadInputNamesTheOpShapesAndDtypes) {
  Tensor a = Tensor::zeros({2, 3}, DType::f32);
  EXPECT_THAT(message_of([&] { ops::cat({a, Tensor::zeros({2, 4}, DType::f32)}, 0); }),
              AllOf(HasSubstr("cat"), HasSubstr("(2, 3)"), HasSubstr("(2, 4)")));
  EXPECT_THAT(message_of([&] { ops::cat({a, Tensor::zeros({2, 3}, DType::f64)}, 0); }),
              AllOf(HasSubstr("cat"), HasSubstr("f32"), HasSubstr("f64")));
  EXPECT_THAT(message_of([&] { ops::cat({a, Tensor::zeros({6}, DType::f32)}, 0); }),
              AllOf(HasSubstr("cat"), HasSubstr("(6,)")));
  EXPECT_THAT(message_of([&] { ops::cat({a, a}, 2); }), AllOf(HasSubstr("cat"), HasSubstr("dim 2")));
  EXPECT_THAT(message_of([&] { ops::cat({}, 0); }), HasSubstr("cat"));
  EXPECT_THAT(message_of([&] { ops::stack({a, Tensor::zeros({3, 2}, DType::f32)}, 0); }),
              AllOf(HasSubstr("stack"), HasSubstr("(2, 3)"), HasSubstr("(3, 2)")));
  EXPECT_THAT(message_of([&] { ops::stack({a, a}, 3); }), AllOf(HasSubstr("stack"), HasSubstr("dim 3")));
}

}  // namespace
}  // namespace shardlab
