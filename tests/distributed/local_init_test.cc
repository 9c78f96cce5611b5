// World size 1 without mpirun: init_process_group gives the local group (no MPI_Init), the timeout
// comes from the options or SHARDLAB_COLLECTIVE_TIMEOUT_S, and a 1-rank mesh is checked like any other.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "distributed/comm_ledger.h"
#include "distributed/device_mesh.h"
#include "distributed/init.h"
#include "distributed/local_process_group.h"
#include "distributed/mpi_runtime.h"

namespace shardlab::dist {
namespace {

using ::testing::HasSubstr;

TEST(InitProcessGroup, WithoutALauncherIsTheLocalGroupAndLeavesMpiAlone) {
  if (MpiRuntime::launched_by_mpi_launcher()) GTEST_SKIP() << "started by an MPI launcher";
  InitOptions options;
  options.timeout = std::chrono::seconds(42);
  ::unsetenv("SHARDLAB_COLLECTIVE_TIMEOUT_S");
  std::shared_ptr<ProcessGroup> g = init_process_group(options);
  EXPECT_EQ(g->backend_name(), "local");
  EXPECT_EQ(g->size(), 1);
  EXPECT_EQ(g->timeout(), std::chrono::seconds(42));
  EXPECT_FALSE(MpiRuntime::mpi_initialized());
  Tensor t = Tensor::full({3}, 2.0, DType::f32);
  g->all_reduce(t, ReduceOp::avg)->wait();
  EXPECT_EQ(t.to_double_vector(), (std::vector<double>{2, 2, 2}));
}

TEST(InitProcessGroup, EnvironmentOverridesTheTimeout) {
  ::setenv("SHARDLAB_COLLECTIVE_TIMEOUT_S", "2.5", 1);
  EXPECT_EQ(collective_timeout_from_env(std::chrono::seconds(300)), std::chrono::milliseconds(2500));
  ::setenv("SHARDLAB_COLLECTIVE_TIMEOUT_S", "soon", 1);
  try {
    collective_timeout_from_env(std::chrono::seconds(300));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("SHARDLAB_COLLECTIVE_TIMEOUT_S='soon'"));
  }
  ::setenv("SHARDLAB_COLLECTIVE_TIMEOUT_S", "0", 1);
  EXPECT_THROW(collective_timeout_from_env(std::chrono::seconds(300)), Error);
  ::unsetenv("SHARDLAB_COLLECTIVE_TIMEOUT_S");
  EXPECT_EQ(collective_timeout_from_env(std::chrono::seconds(300)), std::chrono::seconds(300));
}

// Which GPU a rank takes comes from the launcher's node-local rank: the first variable set wins.
TEST(InitProcessGroup, LocalRankComesFromTheLauncher) {
  const char* names[] = {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};
  std::vector<std::pair<std::string, std::string>> saved;
  for (const char* n : names) {
    if (const char* v = std::getenv(n)) saved.emplace_back(n, v);
    ::unsetenv(n);
  }
  EXPECT_EQ(local_rank_from_env(), 0);
  ::setenv("SLURM_LOCALID", "3", 1);
  EXPECT_EQ(local_rank_from_env(), 3);
  ::setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
  EXPECT_EQ(local_rank_from_env(), 1);
  ::setenv("LOCAL_RANK", "x2", 1);
  EXPECT_THROW(local_rank_from_env(), Error);
  try {
    local_rank_from_env();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("LOCAL_RANK='x2' is not a local rank"), std::string::npos) << e.what();
  }
  for (const char* n : names) ::unsetenv(n);
  for (const auto& [n, v] : saved) ::setenv(n.c_str(), v.c_str(), 1);
}

TEST(DeviceMeshLocal, OneRankMeshHasTheWorldAlongEveryDimension) {
  auto local = std::make_shared<LocalProcessGroup>();
  DeviceMesh mesh(local, {"replicate", "shard"}, {1, 1});
  EXPECT_EQ(mesh.group("shard"), local);
  EXPECT_EQ(mesh.group("replicate"), local);
  EXPECT_EQ(mesh.coordinate("replicate"), 0);
  EXPECT_EQ(mesh.str(), "(replicate=1, shard=1)");
}

TEST(DeviceMeshLocal, BadLayoutsNameTheSizes) {
  auto local = std::make_shared<LocalProcessGroup>();
  try {
    DeviceMesh mesh(local, {"replicate", "shard"}, {2, 2});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("DeviceMesh (replicate=2, shard=2): the sizes multiply to 4 but the world has 1 ranks"));
  }
  EXPECT_THROW(DeviceMesh(local, {"shard", "shard"}, {1, 1}), Error);
  EXPECT_THROW(DeviceMesh(local, {"shard"}, {1, 1}), Error);
  EXPECT_THROW(DeviceMesh(local, {"shard"}, {0}), Error);
  DeviceMesh mesh(local, {"shard"}, {1});
  try {
    mesh.group("tensor");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("no dimension 'tensor' (dimensions: shard)"));
  }
}

TEST(LocalProcessGroup, SubGroupSharesTheLedgerAndTimeout) {
  LocalProcessGroup local;
  local.set_timeout(std::chrono::seconds(7));
  std::shared_ptr<ProcessGroup> sub = local.new_group({0}, "solo");
  sub->barrier()->wait();
  EXPECT_EQ(&sub->ledger(), &local.ledger());
  EXPECT_EQ(local.ledger().stats(CollectiveKind::barrier).calls, 1);
  EXPECT_EQ(sub->timeout(), std::chrono::seconds(7));
}

}  // namespace
}  // namespace shardlab::dist
