// Under mpirun on one machine: ranks that name the same GPU share it (so auto falls back to
// host-staged MPI and says why), ranks with a GPU each do not; the check agrees on every rank.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "distributed/device_process_group.h"
#include "tests/distributed/mpi_ranks/mpi_test_world.h"

namespace shardlab::dist {
namespace {

using testing::world;
using ::testing::HasSubstr;

TEST(DeviceBackendRanks, OneGpuForAllRanksIsSharedOneEachIsNot) {
  EXPECT_EQ(ranks_share_a_gpu(world(), Device::cuda(0)), world().size() > 1);
  EXPECT_FALSE(ranks_share_a_gpu(world(), Device::cuda(world().rank())));
}

TEST(DeviceBackendRanks, SharedGpuRunsHostStagedWithTheReason) {
  if (world().size() == 1) GTEST_SKIP() << "one rank shares nothing";
  std::shared_ptr<ProcessGroup> w(&world(), [](ProcessGroup*) {});
  const DeviceGroup g = device_process_group(w, Device::cuda(0), CommBackend::automatic);
  EXPECT_EQ(g.backend, CommBackend::mpi);
  EXPECT_THAT(g.group->backend_name(), HasSubstr("host-staged"));
  EXPECT_THAT(g.reason, HasSubstr("several ranks share one GPU"));
  EXPECT_EQ(g.group->size(), world().size());
}

}  // namespace
}  // namespace shardlab::dist
