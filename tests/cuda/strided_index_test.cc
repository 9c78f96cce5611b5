// The host side of the CUDA element-wise offset calculator (cuda/strided_index.cuh): dim merging,
// broadcast strides and StridedIndex::offsets against core/strided.h's offset_of. Needs no GPU.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/strided.h"
#include "cuda/strided_index.cuh"

namespace shardlab::cuda {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(CudaStridedIndex, ContiguousOperandsMergeIntoOneDim) {
  const Shape shape = {4, 5, 6};
  const MergedDims<2> m = merge_dims<2>(shape, {contiguous_strides(shape), contiguous_strides(shape)});
  EXPECT_THAT(m.sizes, ElementsAre(120));
  EXPECT_THAT(m.strides[0], ElementsAre(1));
  EXPECT_THAT(m.strides[1], ElementsAre(1));
  EXPECT_TRUE(is_flat_contiguous(m));
}

TEST(CudaStridedIndex, TransposedOperandKeepsItsDims) {
  // out (3, 4) contiguous, input the transpose of a contiguous (4, 3): strides (1, 3).
  const MergedDims<2> m = merge_dims<2>({3, 4}, {Shape{4, 1}, Shape{1, 3}});
  EXPECT_THAT(m.sizes, ElementsAre(3, 4));
  EXPECT_THAT(m.strides[0], ElementsAre(4, 1));
  EXPECT_THAT(m.strides[1], ElementsAre(1, 3));
  EXPECT_FALSE(is_flat_contiguous(m));
}

TEST(CudaStridedIndex, SizeOneDimsAreDroppedAndScalarsBecomeOneElement) {
  const MergedDims<2> m = merge_dims<2>({2, 1, 3}, {Shape{3, 99, 1}, Shape{3, 7, 1}});
  EXPECT_THAT(m.sizes, ElementsAre(6));
  EXPECT_THAT(m.strides[0], ElementsAre(1));
  EXPECT_THAT(m.strides[1], ElementsAre(1));

  const MergedDims<2> s = merge_dims<2>({}, {Shape{}, Shape{}});
  EXPECT_THAT(s.sizes, ElementsAre(1));
  EXPECT_THAT(s.strides[0], ElementsAre(0));
  EXPECT_THAT(s.strides[1], ElementsAre(0));
  EXPECT_FALSE(is_flat_contiguous(s));  // stride 0: the strided kernel handles it
}

TEST(CudaStridedIndex, BroadcastDimsMergeOnlyWithOtherBroadcastDims) {
  // in (1, 1, 5) broadcast to out (2, 3, 5): the two broadcast dims merge, the row stays apart.
  const Shape out = {2, 3, 5};
  const Shape in = broadcast_strides({1, 1, 5}, {5, 5, 1}, out);
  EXPECT_THAT(in, ElementsAre(0, 0, 1));
  const MergedDims<2> m = merge_dims<2>(out, {contiguous_strides(out), in});
  EXPECT_THAT(m.sizes, ElementsAre(6, 5));
  EXPECT_THAT(m.strides[0], ElementsAre(5, 1));
  EXPECT_THAT(m.strides[1], ElementsAre(0, 1));
}

TEST(CudaStridedIndex, BroadcastStridesPrependAndZeroSizeOneDims) {
  EXPECT_THAT(broadcast_strides({3, 1}, {1, 1}, {2, 3, 4}), ElementsAre(0, 1, 0));
  EXPECT_THAT(broadcast_strides({}, {}, {2, 3}), ElementsAre(0, 0));
  EXPECT_THAT(broadcast_strides({2, 3}, {3, 1}, {2, 3}), ElementsAre(3, 1));
}

// Every linear index of `shape` gives, for each operand, core/strided.h's offset_of on the
// unmerged layout; both index widths.
template <size_t N>
void expect_offsets_match(const Shape& shape, const std::array<Shape, N>& strides) {
  const MergedDims<N> m = merge_dims<N>(shape, strides);
  const StridedIndex<static_cast<int>(N)> index = make_strided_index(m, "test");
  const int64_t n = shape_numel(shape);
  for (int64_t i = 0; i < n; ++i) {
    int64_t off32[N], off64[N];
    index.offsets(static_cast<uint32_t>(i), off32);
    index.offsets(static_cast<int64_t>(i), off64);
    for (size_t k = 0; k < N; ++k) {
      const int64_t want = offset_of(i, shape, strides[k]);
      ASSERT_EQ(off32[k], want) << "uint32 index " << i << " operand " << k << " of shape " << shape_str(shape);
      ASSERT_EQ(off64[k], want) << "int64 index " << i << " operand " << k << " of shape " << shape_str(shape);
    }
  }
}

TEST(CudaStridedIndex, OffsetsMatchTheUnmergedLayout) {
  // out contiguous (5, 6, 7, 8); a: a permuted (7, 5, 8, 6) buffer; b: a (6, 1) broadcast;
  // c: a slice with step 2 along the last dim of a (5, 6, 7, 16) buffer.
  const Shape shape = {5, 6, 7, 8};
  const Shape a = {48, 1, 240, 6};  // (7, 5, 8, 6) contiguous, strides (240, 48, 6, 1), permuted (1, 3, 0, 2)
  const Shape b = broadcast_strides({6, 1}, {1, 1}, shape);
  const Shape c = {6 * 7 * 16, 7 * 16, 16, 2};
  expect_offsets_match<4>(shape, {contiguous_strides(shape), a, b, c});
  expect_offsets_match<2>({3, 1, 4}, {Shape{4, 4, 1}, Shape{0, 0, 0}});  // scalar broadcast
  expect_offsets_match<2>({37}, {Shape{1}, Shape{3}});                    // one strided dim
  expect_offsets_match<1>({2, 3, 2, 3, 2, 3, 2, 3}, {Shape{1, 2, 6, 12, 36, 72, 216, 432}});  // 8 dims
}

TEST(CudaStridedIndex, MoreThanEightMergedDimsIsAnErrorNamingTheOp) {
  // Strides growing inwards: no two dims merge, leaving 9.
  const Shape shape(9, 2);
  Shape strides(9);
  for (int d = 0; d < 9; ++d) strides[d] = int64_t{1} << d;
  const MergedDims<1> m = merge_dims<1>(shape, {strides});
  EXPECT_EQ(m.sizes.size(), 9u);
  try {
    make_strided_index(m, "copy_");
    FAIL() << "9 dims were accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("copy_: the CUDA kernel handles at most 8 dims"));
  }
}

}  // namespace
}  // namespace shardlab::cuda
