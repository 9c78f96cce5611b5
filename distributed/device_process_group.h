// Which process group a run's collectives on device tensors go through: NCCL when the build has
// it and every rank owns its GPU, else the MPI world behind host staging (several ranks sharing a
// GPU, which NCCL refuses, or a build without NCCL). HF's / Axolotl's `ddp_backend` picks one.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "distributed/process_group.h"

namespace shardlab::dist {

enum class CommBackend { automatic, nccl, mpi };
const char* comm_backend_name(CommBackend backend);  // "auto", "nccl", "mpi"

// The facts the choice rests on.
struct BackendFacts {
  bool nccl_built = false;  // this build has the NCCL process group
  bool gpu_shared = false;  // two ranks of the world use the same GPU of the same node
};

// The backend that runs device collectives, and why (one line for the run's header). `requested`
// nccl where NCCL cannot run is an error saying why; mpi is always possible (host-staged).
std::pair<CommBackend, std::string> choose_comm_backend(CommBackend requested, const BackendFacts& facts);

// One entry per rank: (node identity, device index). True when two ranks have the same pair.
bool any_gpu_shared(const std::vector<std::pair<int64_t, int64_t>>& node_and_device);

// Collective over `world`: every rank tells its node (a hash of its host name) and device index.
bool ranks_share_a_gpu(ProcessGroup& world, Device device);

struct DeviceGroup {
  std::shared_ptr<ProcessGroup> group;
  CommBackend backend = CommBackend::mpi;
  std::string reason;
};

// Collective over `world`. The CPU: `world` itself. A GPU: NCCL on it (world size 1 included: its
// collectives are device copies) or `world` behind host staging, as choose_comm_backend decides.
DeviceGroup device_process_group(std::shared_ptr<ProcessGroup> world, Device device, CommBackend requested);

}  // namespace shardlab::dist
