// DataLoader: seeded shuffles (deterministic, seed and epoch sensitive, uniform), batch counts,
// rank slices that are disjoint, covering and equal to the single-process global batch, and
// resuming from a saved position with identical batches.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "models/data_loader.h"
#include "tests/models/data_test_util.h"

namespace shardlab::models {
namespace {

using ::testing::HasSubstr;
using testing::error_of;

// Sample i: [1, 1000 + i, ...] of length 2 + i % 5, all trained but the first token.
std::vector<Sample> corpus(int64_t n) {
  std::vector<Sample> out;
  for (int64_t i = 0; i < n; ++i) {
    Sample s{{1}, {kIgnoreLabel}};
    for (int64_t k = 0; k < 1 + i % 5; ++k) {
      s.input_ids.push_back(1000 + i);
      s.labels.push_back(1000 + i);
    }
    out.push_back(s);
  }
  return out;
}

std::vector<int64_t> flat(const std::vector<std::vector<int64_t>>& rows) {
  std::vector<int64_t> out;
  for (const auto& r : rows) out.insert(out.end(), r.begin(), r.end());
  return out;
}

LoaderOptions opts(int64_t B, int64_t rank = 0, int64_t world = 1, bool packing = false) {
  LoaderOptions o;
  o.micro_batch_size = B;
  o.sequence_len = 16;
  o.sample_packing = packing;
  o.seed = 1234;
  o.rank = rank;
  o.world_size = world;
  return o;
}

// The samples of a whole epoch, in order, for a single process with one sample per batch.
std::vector<int64_t> epoch_order(const std::vector<Sample>& data, LoaderOptions o, int64_t epoch) {
  o.micro_batch_size = 1;
  DataLoader l(data, o);
  std::vector<int64_t> out;
  for (int64_t k = 0; k < l.batches_in_epoch(epoch); ++k) out.push_back(l.batch_samples(epoch, k)[0][0]);
  return out;
}

TEST(DataShuffle, PermutationIsDeterministicAndSeedSensitive) {
  std::vector<int64_t> a = seeded_permutation(50, 1, 0), b = seeded_permutation(50, 1, 0);
  EXPECT_EQ(a, b);
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 50; ++i) ASSERT_EQ(sorted[i], i);
  EXPECT_NE(a, seeded_permutation(50, 2, 0));  // another seed
  EXPECT_NE(a, seeded_permutation(50, 1, 1));  // another epoch
  std::vector<int64_t> identity(50);
  for (int64_t i = 0; i < 50; ++i) identity[i] = i;
  EXPECT_NE(a, identity);
}

TEST(DataShuffle, AllPermutationsAreEquallyLikely) {
  // Fisher-Yates must give each of the 24 orders of 4 items with probability 1/24.
  std::map<std::vector<int64_t>, int> counts;
  const int trials = 24000;
  for (int s = 0; s < trials; ++s) ++counts[seeded_permutation(4, static_cast<uint64_t>(s), 3)];
  ASSERT_EQ(counts.size(), 24u);
  double chi2 = 0;
  for (const auto& [perm, c] : counts) chi2 += (c - 1000.0) * (c - 1000.0) / 1000.0;
  // 23 degrees of freedom: P(chi2 > 49.7) < 0.001.
  EXPECT_LT(chi2, 49.7);
}

TEST(DataLoader, EpochsShuffleDifferentlyAndDeterministically) {
  std::vector<Sample> data = corpus(30);
  std::vector<int64_t> e0 = epoch_order(data, opts(1), 0), e1 = epoch_order(data, opts(1), 1);
  EXPECT_EQ(e0, epoch_order(data, opts(1), 0));
  EXPECT_NE(e0, e1);
  LoaderOptions other = opts(1);
  other.seed = 99;
  EXPECT_NE(e0, epoch_order(data, other, 0));
  LoaderOptions ordered = opts(1);
  ordered.shuffle = false;
  std::vector<int64_t> in_order = epoch_order(data, ordered, 0);
  for (int64_t i = 0; i < 30; ++i) EXPECT_EQ(in_order[i], i);
}

TEST(DataLoader, BatchCountsDropOrKeepTheLastGlobalBatch) {
  std::vector<Sample> data = corpus(20);
  EXPECT_EQ(DataLoader(data, opts(6)).batches_in_epoch(0), 3);
  EXPECT_EQ(DataLoader(data, opts(2, 0, 3)).batches_in_epoch(0), 3);
  LoaderOptions keep = opts(2, 0, 3);
  keep.drop_last = false;
  EXPECT_EQ(DataLoader(data, keep).batches_in_epoch(0), 4);
  EXPECT_EQ(DataLoader(data, opts(6)).batches_in_epochs(3), 9);
}

TEST(DataLoader, RanksAreDisjointCoveringAndMatchTheSingleProcessGlobalBatch) {
  std::vector<Sample> data = corpus(20);
  const int64_t W = 3, B = 2;
  for (bool drop_last : {true, false}) {
    LoaderOptions single = opts(W * B);
    single.drop_last = drop_last;
    DataLoader one(data, single);
    std::vector<DataLoader> ranks;
    for (int64_t r = 0; r < W; ++r) {
      LoaderOptions o = opts(B, r, W);
      o.drop_last = drop_last;
      ranks.emplace_back(data, o);
    }
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      std::vector<int64_t> seen;
      ASSERT_EQ(one.batches_in_epoch(epoch), ranks[0].batches_in_epoch(epoch));
      for (int64_t k = 0; k < one.batches_in_epoch(epoch); ++k) {
        std::vector<int64_t> global;
        for (int64_t r = 0; r < W; ++r) {
          EXPECT_EQ(ranks[r].batches_in_epoch(epoch), one.batches_in_epoch(epoch));
          std::vector<int64_t> mine = flat(ranks[r].batch_samples(epoch, k));
          EXPECT_LE(mine.size(), static_cast<size_t>(B));
          global.insert(global.end(), mine.begin(), mine.end());
        }
        EXPECT_EQ(global, flat(one.batch_samples(epoch, k))) << "epoch " << epoch << " batch " << k;
        seen.insert(seen.end(), global.begin(), global.end());
      }
      std::vector<int64_t> order = epoch_order(data, opts(1), epoch);
      // Every sample at most once; all of them when keeping the last batch, else the first 18.
      std::set<int64_t> unique(seen.begin(), seen.end());
      EXPECT_EQ(unique.size(), seen.size());
      ASSERT_EQ(seen.size(), drop_last ? 18u : 20u);
      EXPECT_EQ(seen, std::vector<int64_t>(order.begin(), order.begin() + seen.size()));
    }
  }
}

TEST(DataLoader, RankPastTheEndGetsAnEmptyBatchWhenKeepingTheLast) {
  std::vector<Sample> data = corpus(7);
  LoaderOptions o = opts(2, 1, 3);  // global batch of 6: batch 1 holds one sample, on rank 0
  o.drop_last = false;
  o.pad_to_sequence_len = true;
  DataLoader l(data, o);
  ASSERT_EQ(l.batches_in_epoch(0), 2);
  Batch b = l.batch(0, 1);
  EXPECT_EQ(b.rows(), 0);
  EXPECT_EQ(b.num_target_tokens, 0);
}

TEST(DataLoader, PackedBatchesHoldWholeSamplesOnce) {
  std::vector<Sample> data = corpus(40);
  DataLoader l(data, opts(2, 0, 1, /*packing=*/true));
  std::vector<int64_t> seen;
  for (int64_t k = 0; k < l.batches_in_epoch(0); ++k) {
    std::vector<std::vector<int64_t>> rows = l.batch_samples(0, k);
    Batch b = l.batch(0, k);
    ASSERT_EQ(b.input_ids.shape(), (Shape{2, 16}));
    ASSERT_TRUE(b.segment_ids.defined());
    std::vector<int64_t> ids = b.input_ids.to_int_vector(), seg = b.segment_ids.to_int_vector();
    for (size_t r = 0; r < rows.size(); ++r) {
      int64_t len = 0;
      for (int64_t i : rows[r]) len += data[i].size();
      EXPECT_LE(len, 16);
      // The documents appear back to back in the row, in the listed order.
      int64_t t = 0;
      for (size_t d = 0; d < rows[r].size(); ++d)
        for (int64_t id : data[rows[r][d]].input_ids) {
          EXPECT_EQ(ids[r * 16 + t], id);
          EXPECT_EQ(seg[r * 16 + t], static_cast<int64_t>(d));
          ++t;
        }
      seen.insert(seen.end(), rows[r].begin(), rows[r].end());
    }
  }
  // Packing follows the epoch's shuffled order.
  std::vector<int64_t> order = epoch_order(data, opts(1), 0);
  EXPECT_EQ(seen, std::vector<int64_t>(order.begin(), order.begin() + seen.size()));
}

void expect_same(const Batch& a, const Batch& b) {
  EXPECT_EQ(a.input_ids.to_int_vector(), b.input_ids.to_int_vector());
  EXPECT_EQ(a.labels.to_int_vector(), b.labels.to_int_vector());
  EXPECT_EQ(a.positions.to_int_vector(), b.positions.to_int_vector());
  EXPECT_EQ(a.segment_ids.defined(), b.segment_ids.defined());
  if (a.segment_ids.defined()) {
    EXPECT_EQ(a.segment_ids.to_int_vector(), b.segment_ids.to_int_vector());
  }
  EXPECT_EQ(a.num_target_tokens, b.num_target_tokens);
}

TEST(DataLoader, ResumeYieldsTheUninterruptedBatches) {
  std::vector<Sample> data = corpus(23);
  for (bool packing : {false, true}) {
    LoaderOptions o = opts(2, 1, 2, packing);
    DataLoader straight(data, o);
    const int64_t total = straight.batches_in_epochs(3);
    std::vector<Batch> expected;
    for (int64_t i = 0; i < total; ++i) expected.push_back(straight.next());
    EXPECT_EQ(straight.position(), (LoaderPosition{3, 0}));

    for (int64_t stop : {int64_t{1}, straight.batches_in_epoch(0), total - 1}) {
      DataLoader first(data, o);
      for (int64_t i = 0; i < stop; ++i) first.next();
      // Through a checkpoint: JSON text and back.
      json::Value saved = json::parse(json::dump(first.position().to_json()));
      DataLoader resumed(data, o);
      resumed.set_position(LoaderPosition::from_json(json::Ref(saved, "state.json")));
      EXPECT_EQ(resumed.position(), first.position());
      for (int64_t i = stop; i < total; ++i) expect_same(resumed.next(), expected[i]);
    }
  }
}

TEST(DataLoader, PositionAtTheEndOfAnEpochNormalises) {
  std::vector<Sample> data = corpus(8);
  DataLoader l(data, opts(4));
  l.set_position({0, 2});
  EXPECT_EQ(l.position(), (LoaderPosition{1, 0}));
  EXPECT_THAT(error_of([&] { l.set_position({0, 3}); }), HasSubstr("past the 2 batches of epoch 0"));
}

TEST(DataLoader, Errors) {
  std::vector<Sample> data = corpus(5);
  EXPECT_THAT(error_of([&] { DataLoader(data, opts(6)); }), HasSubstr("do not fill one global batch"));
  EXPECT_THAT(error_of([&] { DataLoader(data, opts(1, 2, 2)); }), HasSubstr("rank 2 is outside world size 2"));
  LoaderOptions short_seq = opts(1);
  short_seq.sequence_len = 3;
  EXPECT_THAT(error_of([&] { DataLoader(data, short_seq); }), HasSubstr("more than sequence_len 3"));
  EXPECT_THAT(error_of([&] { DataLoader({}, opts(1)); }), HasSubstr("no samples"));
  DataLoader l(data, opts(1));
  EXPECT_THAT(error_of([&] { l.batch(0, 5); }), HasSubstr("batch 5 is outside epoch 0"));
  json::Value bad = json::parse(R"({"epoch": 0, "step": 3})");
  EXPECT_THAT(error_of([&] { LoaderPosition::from_json(json::Ref(bad, "state.json")); }),
              AllOf(HasSubstr("state.json"), HasSubstr("step")));
}

}  // namespace
}  // namespace shardlab::models
