// Choosing the backend for device collectives: NCCL when built and every rank has its own GPU,
// else host-staged MPI with the reason; ddp_backend nccl where NCCL cannot run is an error saying why.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "distributed/device_process_group.h"
#include "distributed/local_process_group.h"

namespace shardlab::dist {
namespace {

using ::testing::HasSubstr;

std::string error_of(CommBackend requested, const BackendFacts& facts) {
  try {
    choose_comm_backend(requested, facts);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(DeviceBackend, AutoTakesNcclOnlyWhenBuiltAndNoGpuIsShared) {
  EXPECT_EQ(choose_comm_backend(CommBackend::automatic, {true, false}).first, CommBackend::nccl);
  const auto shared = choose_comm_backend(CommBackend::automatic, {true, true});
  EXPECT_EQ(shared.first, CommBackend::mpi);
  EXPECT_THAT(shared.second, HasSubstr("several ranks share one GPU"));
  const auto unbuilt = choose_comm_backend(CommBackend::automatic, {false, false});
  EXPECT_EQ(unbuilt.first, CommBackend::mpi);
  EXPECT_THAT(unbuilt.second, HasSubstr("no NCCL"));
}

TEST(DeviceBackend, MpiIsAlwaysPossibleAndNcclIsAnErrorWhereItCannotRun) {
  for (bool built : {false, true})
    for (bool shared : {false, true}) EXPECT_EQ(choose_comm_backend(CommBackend::mpi, {built, shared}).first, CommBackend::mpi);
  EXPECT_EQ(choose_comm_backend(CommBackend::nccl, {true, false}).first, CommBackend::nccl);
  EXPECT_THAT(error_of(CommBackend::nccl, {true, true}),
              HasSubstr("ddp_backend nccl: several ranks share one GPU, which NCCL refuses"));
  EXPECT_THAT(error_of(CommBackend::nccl, {false, false}), HasSubstr("ddp_backend nccl: this build has no NCCL"));
}

TEST(DeviceBackend, SharedMeansTwoRanksOnOneNodeWithOneDeviceIndex) {
  EXPECT_FALSE(any_gpu_shared({{7, 0}, {7, 1}, {9, 0}, {9, 1}}));  // two nodes, two GPUs each
  EXPECT_TRUE(any_gpu_shared({{7, 0}, {7, 1}, {7, 0}}));          // three ranks, two GPUs
  EXPECT_FALSE(any_gpu_shared({{7, 0}}));
}

TEST(DeviceBackend, TheCpuKeepsTheWorldGroup) {
  auto world = std::make_shared<LocalProcessGroup>();
  const DeviceGroup g = device_process_group(world, Device::cpu(), CommBackend::automatic);
  EXPECT_EQ(g.group, world);
  // A GPU at world size 1 asked for MPI: the world behind host staging (no device memory touched).
  const DeviceGroup staged = device_process_group(world, Device::cuda(0), CommBackend::mpi);
  EXPECT_THAT(staged.group->backend_name(), HasSubstr("host-staged"));
  EXPECT_EQ(staged.backend, CommBackend::mpi);
}

}  // namespace
}  // namespace shardlab::dist
