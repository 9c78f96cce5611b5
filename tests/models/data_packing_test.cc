// Padding and sample packing: exact ids, labels, positions and segment ids on hand-built
// samples, including the labels at document boundaries and the target-token count.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "models/packing.h"
#include "tests/models/data_test_util.h"

namespace shardlab::models {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using testing::error_of;

constexpr int64_t X = kIgnoreLabel;

// A sample of `len` tokens with ids base, base+1, ...; the first `masked` labels are ignored.
Sample make(int64_t base, int64_t len, int64_t masked) {
  Sample s;
  for (int64_t k = 0; k < len; ++k) {
    s.input_ids.push_back(base + k);
    s.labels.push_back(k < masked ? X : base + k);
  }
  return s;
}

TEST(DataPacking, NextFitKeepsOrder) {
  std::vector<Sample> s = {make(10, 3, 0), make(20, 4, 0), make(30, 2, 0), make(40, 5, 0), make(50, 1, 0)};
  // Order 0,1,2,3,4 in rows of 8: [0,1] (7) | [2,3,4] (8).
  EXPECT_EQ(pack_samples(s, {0, 1, 2, 3, 4}, 8), (std::vector<std::vector<int64_t>>{{0, 1}, {2, 3, 4}}));
  // Order 3,0,4,1,2: [3,0] (8) | [4,1,2] (7).
  EXPECT_EQ(pack_samples(s, {3, 0, 4, 1, 2}, 8), (std::vector<std::vector<int64_t>>{{3, 0}, {4, 1, 2}}));
  EXPECT_EQ(pack_samples(s, {}, 8).size(), 0u);
}

TEST(DataPacking, TooLongSampleIsAnError) {
  std::vector<Sample> s = {make(10, 9, 0)};
  EXPECT_THAT(error_of([&] { pack_samples(s, {0}, 8); }), HasSubstr("9 tokens, more than sequence_len 8"));
}

TEST(DataPacking, PackedRowLayout) {
  Sample a = make(10, 3, 1);  // ids 10 11 12, labels -100 11 12
  Sample b = make(20, 4, 2);  // ids 20 21 22 23, labels -100 -100 22 23
  Sample c = make(30, 2, 0);  // ids 30 31, labels 30 31 (fully trained)
  Batch batch = collate_packed({{&a, &b}, {&c}}, 8, /*pad_id=*/7);
  ASSERT_EQ(batch.input_ids.shape(), (Shape{2, 8}));
  EXPECT_EQ(batch.input_ids.dtype(), DType::i64);
  EXPECT_THAT(batch.input_ids.to_int_vector(),
              ElementsAreArray<int64_t>({10, 11, 12, 20, 21, 22, 23, 7,  //
                                30, 31, 7, 7, 7, 7, 7, 7}));
  // The first token of every document is not a target (c's label 30 is dropped).
  EXPECT_THAT(batch.labels.to_int_vector(), ElementsAreArray<int64_t>({X, 11, 12, X, X, 22, 23, X,  //
                                                              X, 31, X, X, X, X, X, X}));
  EXPECT_THAT(batch.positions.to_int_vector(), ElementsAreArray<int64_t>({0, 1, 2, 0, 1, 2, 3, 0,  //
                                                                 0, 1, 0, 1, 2, 3, 4, 5}));
  EXPECT_THAT(batch.segment_ids.to_int_vector(), ElementsAreArray<int64_t>({0, 0, 0, 1, 1, 1, 1, 2,  //
                                                                   0, 0, 1, 1, 1, 1, 1, 1}));
  // Targets at t >= 1: row 0 has 11 12 22 23, row 1 has 31.
  EXPECT_EQ(batch.num_target_tokens, 5);
}

TEST(DataPacking, FullRowHasNoPaddingSegment) {
  Sample a = make(10, 4, 0), b = make(20, 4, 0);
  Batch batch = collate_packed({{&a, &b}}, 8, 0);
  EXPECT_THAT(batch.segment_ids.to_int_vector(), ElementsAre(0, 0, 0, 0, 1, 1, 1, 1));
  EXPECT_THAT(batch.labels.to_int_vector(), ElementsAre(X, 11, 12, 13, X, 21, 22, 23));
  EXPECT_EQ(batch.num_target_tokens, 6);
}

TEST(DataPacking, DynamicPaddingToTheLongest) {
  Sample a = make(10, 3, 1), b = make(20, 5, 0);
  Batch batch = collate_padded({&a, &b}, 16, /*pad_to_sequence_len=*/false, /*pad_id=*/0);
  ASSERT_EQ(batch.input_ids.shape(), (Shape{2, 5}));
  EXPECT_THAT(batch.input_ids.to_int_vector(), ElementsAreArray<int64_t>({10, 11, 12, 0, 0, 20, 21, 22, 23, 24}));
  EXPECT_THAT(batch.labels.to_int_vector(), ElementsAreArray<int64_t>({X, 11, 12, X, X, 20, 21, 22, 23, 24}));
  EXPECT_THAT(batch.positions.to_int_vector(), ElementsAreArray<int64_t>({0, 1, 2, 3, 4, 0, 1, 2, 3, 4}));
  EXPECT_FALSE(batch.segment_ids.defined());
  // Position 0 is never predicted: a's 11 12 and b's 21..24.
  EXPECT_EQ(batch.num_target_tokens, 6);
}

TEST(DataPacking, PadToSequenceLen) {
  Sample a = make(10, 2, 0);
  Batch batch = collate_padded({&a}, 4, /*pad_to_sequence_len=*/true, /*pad_id=*/9);
  ASSERT_EQ(batch.input_ids.shape(), (Shape{1, 4}));
  EXPECT_THAT(batch.input_ids.to_int_vector(), ElementsAre(10, 11, 9, 9));
  EXPECT_THAT(batch.labels.to_int_vector(), ElementsAre(10, 11, X, X));
  EXPECT_EQ(batch.num_target_tokens, 1);
}

TEST(DataPacking, EmptyBatchHasZeroRows) {
  Batch batch = collate_padded({}, 4, true, 0);
  EXPECT_EQ(batch.rows(), 0);
  EXPECT_EQ(batch.input_ids.shape(), (Shape{0, 4}));
  EXPECT_EQ(batch.num_target_tokens, 0);
}

TEST(DataPacking, CollateErrors) {
  Sample a = make(10, 5, 0);
  EXPECT_THAT(error_of([&] { collate_padded({&a}, 4, false, 0); }), HasSubstr("more than sequence_len 4"));
  EXPECT_THAT(error_of([&] { collate_packed({{&a, &a}}, 8, 0); }), HasSubstr("more than sequence_len 8"));
  Sample bad = a;
  bad.labels.pop_back();
  EXPECT_THAT(error_of([&] { collate_padded({&bad}, 8, false, 0); }), HasSubstr("5 input ids but 4 labels"));
}

}  // namespace
}  // namespace shardlab::models
