// The world-size-1 process group: collectives complete at once with the right values, bad
// arguments are errors naming the collective and shapes, and the ledger counts every call.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/ops/views.h"
#include "distributed/comm_ledger.h"
#include "distributed/local_process_group.h"

namespace shardlab::dist {
namespace {

using ::testing::HasSubstr;

TEST(LocalProcessGroup, CollectivesOfOneRankCopyAndRecord) {
  LocalProcessGroup local;
  ProcessGroup& g = local;  // callers hold the interface (its default arguments live there)
  EXPECT_EQ(g.rank(), 0);
  EXPECT_EQ(g.size(), 1);
  Tensor in = Tensor::arange(6, DType::f32);
  Tensor out = Tensor::zeros({6}, DType::f32);
  g.all_gather(out, in)->wait();
  EXPECT_EQ(out.to_double_vector(), (std::vector<double>{0, 1, 2, 3, 4, 5}));
  Tensor rs = Tensor::zeros({2, 3}, DType::f32);
  g.reduce_scatter(rs, in)->wait();
  EXPECT_EQ(rs.to_double_vector()[5], 5.0);
  g.all_reduce(in)->wait();
  EXPECT_EQ(in.to_double_vector()[4], 4.0);
  EXPECT_EQ(g.ledger().stats(CollectiveKind::all_gather).calls, 1);
  EXPECT_EQ(g.ledger().stats(CollectiveKind::all_gather).payload_bytes, 24);
  EXPECT_EQ(g.ledger().stats(CollectiveKind::reduce_scatter).payload_bytes, 24);
  EXPECT_EQ(g.ledger().total().calls, 3);
  EXPECT_EQ(g.ledger().total().wire_bytes, 0);
}

TEST(LocalProcessGroup, BadArgumentsNameTheCollectiveAndShapes) {
  LocalProcessGroup local;
  ProcessGroup& g = local;  // callers hold the interface (its default arguments live there)
  Tensor in = Tensor::zeros({4}, DType::f32);
  Tensor out = Tensor::zeros({5}, DType::f32);
  try {
    g.all_gather(out, in);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("all_gather"));
    EXPECT_THAT(e.what(), HasSubstr("(5,)"));
  }
  Tensor wrong_dtype = Tensor::zeros({4}, DType::f64);
  EXPECT_THROW(g.reduce_scatter(wrong_dtype, in), Error);
  Tensor strided = ops::transpose(Tensor::zeros({2, 3}, DType::f32), 0, 1);
  EXPECT_THROW(g.all_reduce(strided), Error);
}

TEST(CommLedger, RingWireBytesFollowTheAlphaBetaModel) {
  EXPECT_EQ(ring_wire_bytes(CollectiveKind::all_reduce, 1000, 4), 1500);
  EXPECT_EQ(ring_wire_bytes(CollectiveKind::reduce_scatter, 1000, 4), 750);
  EXPECT_EQ(ring_wire_bytes(CollectiveKind::all_gather, 1000, 4), 750);
  EXPECT_EQ(ring_wire_bytes(CollectiveKind::all_reduce, 1000, 1), 0);
}

}  // namespace
}  // namespace shardlab::dist
