// Choosing NCCL or host-staged MPI for device collectives (see device_process_group.h).
#include "distributed/device_process_group.h"

#include <unistd.h>

#include <functional>
#include <set>

#include "core/error.h"
#include "distributed/host_staged_process_group.h"
#ifdef SHARDLAB_HAVE_NCCL
#include "distributed/nccl_process_group.h"
#endif

namespace shardlab::dist {

const char* comm_backend_name(CommBackend backend) {
  switch (backend) {
    case CommBackend::automatic: return "auto";
    case CommBackend::nccl: return "nccl";
    case CommBackend::mpi: return "mpi";
  }
  return "?";
}

std::pair<CommBackend, std::string> choose_comm_backend(CommBackend requested, const BackendFacts& facts) {
  const char* why_not = !facts.nccl_built ? "this build has no NCCL (nccl.h / libnccl were not found)"
                        : facts.gpu_shared ? "several ranks share one GPU, which NCCL refuses"
                                           : nullptr;
  switch (requested) {
    case CommBackend::mpi:
      return {CommBackend::mpi, "host-staged MPI (ddp_backend: mpi)"};
    case CommBackend::nccl:
      SL_CHECK(why_not == nullptr, "ddp_backend nccl: ", why_not, "; use ddp_backend: mpi (host-staged) or auto");
      return {CommBackend::nccl, "NCCL (ddp_backend: nccl)"};
    case CommBackend::automatic:
      if (why_not == nullptr) return {CommBackend::nccl, "NCCL (every rank has its own GPU)"};
      return {CommBackend::mpi, std::string("host-staged MPI, not NCCL: ") + why_not};
  }
  return {CommBackend::mpi, ""};
}

bool any_gpu_shared(const std::vector<std::pair<int64_t, int64_t>>& node_and_device) {
  std::set<std::pair<int64_t, int64_t>> seen;
  for (const auto& key : node_and_device)
    if (!seen.insert(key).second) return true;
  return false;
}

bool ranks_share_a_gpu(ProcessGroup& world, Device device) {
  if (world.size() == 1) return false;
  char host[256] = {};
  SL_CHECK(::gethostname(host, sizeof(host) - 1) == 0, "ranks_share_a_gpu: gethostname failed");
  // A hash names the node; two nodes colliding in 63 bits would only make the choice conservative.
  const auto node = static_cast<int64_t>(std::hash<std::string>{}(host) >> 1);
  Tensor all = Tensor::zeros({2 * static_cast<int64_t>(world.size())}, DType::i64);
  world.all_gather(all, Tensor::from_ints({node, device.index}, {2}))->wait();
  const std::vector<int64_t> v = all.to_int_vector();
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (size_t r = 0; r + 1 < v.size(); r += 2) pairs.emplace_back(v[r], v[r + 1]);
  return any_gpu_shared(pairs);
}

DeviceGroup device_process_group(std::shared_ptr<ProcessGroup> world, Device device, CommBackend requested) {
  if (device.is_cpu()) return {world, CommBackend::mpi, "the CPU: " + world->backend_name()};
  BackendFacts facts;
#ifdef SHARDLAB_HAVE_NCCL
  facts.nccl_built = true;
#endif
  facts.gpu_shared = ranks_share_a_gpu(*world, device);  // collective: before any rank may throw
  auto [backend, reason] = choose_comm_backend(requested, facts);
#ifdef SHARDLAB_HAVE_NCCL
  if (backend == CommBackend::nccl) return {NcclProcessGroup::create(world, device.index), backend, reason};
#endif
  return {for_device(world, device), CommBackend::mpi, reason};
}

}  // namespace shardlab::dist
