// Sub-groups and the device mesh under mpirun: membership, rank layout (row-major, shard fastest)
// and hybrid reduction (shard group, then replicate group) equal to the world all_reduce.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "distributed/comm_ledger.h"
#include "distributed/device_mesh.h"
#include "tests/distributed/mpi_ranks/mpi_test_world.h"

namespace shardlab::dist {
namespace {

using testing::filled;
using testing::world;
using ::testing::HasSubstr;

std::shared_ptr<ProcessGroup> world_ptr() {
  // DeviceMesh holds the world by shared_ptr; alias the test's process-wide group without owning it.
  return std::shared_ptr<ProcessGroup>(&world(), [](ProcessGroup*) {});
}

TEST(MpiSubGroups, EvenRanksReduceAmongThemselves) {
  ProcessGroup& g = world();
  std::vector<int> evens;
  for (int r = 0; r < g.size(); r += 2) evens.push_back(r);
  std::shared_ptr<ProcessGroup> sub = g.new_group(evens, "even");
  if (g.rank() % 2 == 1) {
    EXPECT_EQ(sub, nullptr);
  } else {
    ASSERT_NE(sub, nullptr);
    EXPECT_EQ(sub->size(), static_cast<int>(evens.size()));
    EXPECT_EQ(sub->rank(), g.rank() / 2);
    EXPECT_EQ(sub->world_ranks(), evens);
    EXPECT_EQ(sub->name(), "even");
    Tensor t = Tensor::full({3}, g.rank() + 1.0, DType::f64);
    sub->all_reduce(t)->wait();
    double expected = 0;
    for (int r : evens) expected += r + 1.0;
    EXPECT_EQ(t.to_double_vector(), std::vector<double>(3, expected));
  }
  g.barrier()->wait();
}

TEST(MpiSubGroups, SubGroupOrderFollowsTheList) {
  // Listing the ranks backwards makes world rank n-1 the sub-group's rank 0 (and broadcast root).
  ProcessGroup& g = world();
  std::vector<int> backwards;
  for (int r = g.size() - 1; r >= 0; --r) backwards.push_back(r);
  std::shared_ptr<ProcessGroup> sub = g.new_group(backwards, "backwards");
  ASSERT_NE(sub, nullptr);
  EXPECT_EQ(sub->rank(), g.size() - 1 - g.rank());
  Tensor t = Tensor::full({2}, g.rank(), DType::i64);
  sub->broadcast(t, 0)->wait();
  EXPECT_EQ(t.to_double_vector(), std::vector<double>(2, g.size() - 1));
}

TEST(MpiDeviceMesh, EveryFactorisationHasRowMajorGroups) {
  ProcessGroup& g = world();
  const int n = g.size(), me = g.rank();
  for (int replicate = 1; replicate <= n; ++replicate) {
    if (n % replicate != 0) continue;
    const int shard = n / replicate;
    DeviceMesh mesh(world_ptr(), {"replicate", "shard"}, {replicate, shard});
    EXPECT_EQ(mesh.coordinate("replicate"), me / shard) << mesh.str();
    EXPECT_EQ(mesh.coordinate("shard"), me % shard) << mesh.str();
    std::vector<int> shard_ranks, replicate_ranks;
    for (int s = 0; s < shard; ++s) shard_ranks.push_back(me / shard * shard + s);
    for (int r = 0; r < replicate; ++r) replicate_ranks.push_back(r * shard + me % shard);
    EXPECT_EQ(mesh.group("shard")->world_ranks(), shard_ranks) << mesh.str();
    EXPECT_EQ(mesh.group("replicate")->world_ranks(), replicate_ranks) << mesh.str();
    EXPECT_EQ(mesh.group("shard")->rank(), me % shard);
    EXPECT_EQ(mesh.group("replicate")->rank(), me / shard);

    // Hybrid: reduce within the shard group, then across the replicate group = world all_reduce.
    auto value = [](int r, int64_t j) { return r * 100.0 + j; };
    Tensor hybrid = filled(9, DType::f64, [&](int64_t j) { return value(me, j); });
    mesh.group("shard")->all_reduce(hybrid)->wait();
    mesh.group("replicate")->all_reduce(hybrid)->wait();
    Tensor flat = filled(9, DType::f64, [&](int64_t j) { return value(me, j); });
    g.all_reduce(flat)->wait();
    EXPECT_EQ(hybrid.to_double_vector(), flat.to_double_vector()) << mesh.str();
    for (int64_t j = 0; j < 9; ++j) EXPECT_EQ(flat.to_double_vector()[j], 50.0 * n * (n - 1) + n * j);
  }
}

TEST(MpiDeviceMesh, HybridReduceScatterThenAllReduceMatchesTheWorld) {
  // fsdp_hybrid_shard's gradient path: reduce-scatter in the shard group, all-reduce the shard
  // across replicas; each rank ends with its shard-group chunk of the world sum.
  ProcessGroup& g = world();
  const int n = g.size(), me = g.rank();
  if (n != 4) GTEST_SKIP() << "the 2 x 2 mesh needs 4 ranks";
  DeviceMesh mesh(world_ptr(), {"replicate", "shard"}, {2, 2});
  EXPECT_EQ(mesh.group("shard")->name(), me < 2 ? "shard[0,1]" : "shard[2,3]");
  EXPECT_EQ(mesh.group("replicate")->name(), me % 2 == 0 ? "replicate[0,2]" : "replicate[1,3]");
  auto value = [](int r, int64_t j) { return r * 10.0 + j; };
  Tensor grads = filled(8, DType::f32, [&](int64_t j) { return value(me, j); });
  Tensor shard = Tensor::zeros({4}, DType::f32);
  mesh.group("shard")->reduce_scatter(shard, grads, ReduceOp::avg)->wait();
  mesh.group("replicate")->all_reduce(shard, ReduceOp::avg)->wait();
  const int s = mesh.coordinate("shard");
  for (int64_t j = 0; j < 4; ++j) {
    double sum = 0;
    for (int r = 0; r < n; ++r) sum += value(r, s * 4 + j);
    EXPECT_EQ(shard.to_double_vector()[j], sum / n);
  }
}

TEST(MpiDeviceMesh, CollectivesOfSeveralGroupsAreInFlightTogether) {
  // Issue on the shard group, the replicate group and the world, then wait in reverse order: the
  // one communication thread keeps all three in flight, so none waits on another.
  ProcessGroup& g = world();
  const int n = g.size();
  if (n != 4) GTEST_SKIP() << "the 2 x 2 mesh needs 4 ranks";
  DeviceMesh mesh(world_ptr(), {"replicate", "shard"}, {2, 2});
  Tensor a = Tensor::full({50000}, 1.0, DType::f32);
  Tensor b = Tensor::full({50000}, 2.0, DType::f32);
  Tensor c = Tensor::full({50000}, 3.0, DType::f32);
  WorkHandle on_shard = mesh.group("shard")->all_reduce(a);
  WorkHandle on_replicate = mesh.group("replicate")->all_reduce(b);
  WorkHandle on_world = g.all_reduce(c);
  on_world->wait();
  on_replicate->wait();
  on_shard->wait();
  EXPECT_EQ(a.to_double_vector().back(), 2.0);
  EXPECT_EQ(b.to_double_vector().back(), 4.0);
  EXPECT_EQ(c.to_double_vector().back(), 12.0);
}

TEST(MpiDeviceMesh, OneDimensionalMeshIsTheWorld) {
  DeviceMesh mesh(world_ptr(), {"shard"}, {world().size()});
  EXPECT_EQ(mesh.group("shard").get(), &world());
  EXPECT_EQ(mesh.coordinate("shard"), world().rank());
}

TEST(MpiDeviceMesh, SizesThatDoNotMultiplyToTheWorldAreAnError) {
  const int n = world().size();
  try {
    DeviceMesh mesh(world_ptr(), {"replicate", "shard"}, {n, 3});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("(replicate=" + std::to_string(n) + ", shard=3)"));
    EXPECT_THAT(e.what(), HasSubstr("multiply to " + std::to_string(3 * n) + " but the world has " +
                                    std::to_string(n) + " ranks"));
  }
}

}  // namespace
}  // namespace shardlab::dist
