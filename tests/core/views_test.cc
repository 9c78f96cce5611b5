// Views share storage and version counters with their base; layout ops compute the right strides
// and offsets; reshape copies only when it must.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/ops.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;

Tensor iota(const Shape& shape, DType dtype = DType::f32) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
  return Tensor::from_vector(v, shape, dtype);
}

TEST(Views, TransposeSwapsStridesAndSharesStorage) {
  Tensor a = iota({2, 3});
  Tensor t = ops::transpose(a, 0, 1);
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  EXPECT_EQ(t.strides(), (Shape{1, 3}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.storage(), a.storage());
  EXPECT_EQ(t.to_double_vector(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  Tensor c = ops::contiguous(t);
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.storage(), a.storage());
  EXPECT_EQ(c.to_double_vector(), t.to_double_vector());
}

TEST(Views, WritesThroughAViewAreSeenByTheBaseAndBumpTheSharedVersion) {
  Tensor a = iota({2, 3});
  Tensor row = ops::narrow(a, 0, 1, 1);
  const uint64_t before = a.version();
  ops::fill_(row, -1.0);
  EXPECT_EQ(a.to_double_vector(), (std::vector<double>{0, 1, 2, -1, -1, -1}));
  EXPECT_EQ(a.version(), before + 1);
  EXPECT_EQ(row.version(), a.version());
}

TEST(Views, PermuteNarrowSliceAndOffsets) {
  Tensor a = iota({2, 3, 4});
  Tensor p = ops::permute(a, {2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.strides(), (Shape{1, 12, 4}));
  Tensor n = ops::narrow(a, 2, 1, 2);  // a[:, :, 1:3]
  EXPECT_EQ(n.offset(), 1);
  EXPECT_EQ(n.to_double_vector(), (std::vector<double>{1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22}));
  Tensor s = ops::slice(a, 2, 0, 4, 2);  // a[:, :, ::2]
  EXPECT_EQ(s.strides(), (Shape{12, 4, 2}));
  EXPECT_EQ(s.to_double_vector(), (std::vector<double>{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22}));
  Tensor neg = ops::slice(a, -1, -2, 100);  // a[..., -2:]
  EXPECT_EQ(neg.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(neg.to_double_vector()[0], 2.0);
  EXPECT_THROW(ops::narrow(a, 1, 2, 2), Error);
  EXPECT_THROW(ops::permute(a, {0, 0, 1}), Error);
}

TEST(Views, ExpandUsesZeroStridesAndPrependsDims) {
  Tensor a = Tensor::from_vector({1, 2, 3}, {3, 1});
  Tensor e = ops::expand(a, {2, 3, 4});
  EXPECT_EQ(e.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(e.strides(), (Shape{0, 1, 0}));
  EXPECT_EQ(ops::contiguous(e).to_double_vector()[4], 2.0);
  EXPECT_EQ(ops::expand(a, {-1, 5}).shape(), (Shape{3, 5}));
  try {
    ops::expand(a, {2, 4});
    FAIL();
  } catch (const Error& err) {
    EXPECT_THAT(err.what(), HasSubstr("(3, 1)"));
    EXPECT_THAT(err.what(), HasSubstr("(2, 4)"));
  }
}

TEST(Views, UnsqueezeAndSqueeze) {
  Tensor a = iota({2, 3});
  EXPECT_EQ(ops::unsqueeze(a, 0).shape(), (Shape{1, 2, 3}));
  EXPECT_EQ(ops::unsqueeze(a, -1).shape(), (Shape{2, 3, 1}));
  EXPECT_EQ(ops::unsqueeze(a, 1).strides(), (Shape{3, 3, 1}));
  EXPECT_EQ(ops::squeeze(ops::unsqueeze(a, 1), 1).shape(), (Shape{2, 3}));
  EXPECT_EQ(ops::squeeze(a, 0).shape(), (Shape{2, 3}));  // size 2: unchanged
  EXPECT_EQ(ops::squeeze(iota({1, 2, 1, 3, 1})).shape(), (Shape{2, 3}));
}

TEST(Views, ViewInfersMinusOneAndRefusesIncompatibleStrides) {
  Tensor a = iota({2, 3, 4});
  EXPECT_EQ(ops::view(a, {6, -1}).shape(), (Shape{6, 4}));
  EXPECT_EQ(ops::view(a, {6, -1}).storage(), a.storage());
  Tensor t = ops::transpose(a, 1, 2);  // (2, 4, 3) non-contiguous
  // Merging the last two dims of a transposed tensor is impossible without a copy.
  try {
    ops::view(t, {2, 12});
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("view"));
    EXPECT_THAT(e.what(), HasSubstr("(2, 4, 3)"));
  }
  // ...but splitting the untouched leading dim is a view.
  EXPECT_EQ(ops::view(t, {1, 2, 4, 3}).storage(), a.storage());
  Tensor r = ops::reshape(t, {2, 12});
  EXPECT_NE(r.storage(), a.storage());
  EXPECT_EQ(r.to_double_vector(), ops::contiguous(t).to_double_vector());
  EXPECT_THROW(ops::view(a, {5, -1}), Error);
  EXPECT_THROW(ops::view(a, {-1, -1}), Error);
}

TEST(Views, SplitGivesNarrowViews) {
  Tensor a = iota({5, 2});
  std::vector<Tensor> parts = ops::split(a, 2, 0);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[2].shape(), (Shape{1, 2}));
  EXPECT_EQ(parts[1].to_double_vector(), (std::vector<double>{4, 5, 6, 7}));
  EXPECT_EQ(parts[1].storage(), a.storage());
  EXPECT_THROW(ops::split_sizes(a, {2, 2}, 0), Error);
}

TEST(Views, CopyBroadcastsAndConverts) {
  Tensor dst = Tensor::zeros({2, 3}, DType::f64);
  ops::copy_(dst, Tensor::from_vector({1, 2, 3}, {3}, DType::f32));
  EXPECT_EQ(dst.to_double_vector(), (std::vector<double>{1, 2, 3, 1, 2, 3}));
  // Into a non-contiguous destination.
  Tensor base = Tensor::zeros({3, 2});
  ops::copy_(ops::transpose(base, 0, 1), iota({2, 3}));
  EXPECT_EQ(base.to_double_vector(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  EXPECT_THROW(ops::copy_(dst, iota({4})), Error);
}

}  // namespace
}  // namespace shardlab
