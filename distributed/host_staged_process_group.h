// Collectives on device tensors over a host backend: each device tensor is copied to the host,
// the wrapped group (MPI) runs the collective there, and wait() copies the result back. What runs
// several ranks on GPUs that NCCL cannot join (several ranks sharing one GPU, a build without NCCL):
// correct and bit-identical to the host collective, but the copies are synchronous and add two
// transfers of the payload per collective, and nothing overlaps with compute on the device. The
// communication ledger records the wrapped collective (the payload), not the staging copies.
#pragma once

#include <memory>

#include "distributed/process_group.h"

namespace shardlab::dist {

class HostStagedProcessGroup final : public ProcessGroup {
 public:
  // `host` runs the collectives (its rank, members, name and ledger are this group's).
  explicit HostStagedProcessGroup(std::shared_ptr<ProcessGroup> host);
  std::string backend_name() const override { return host_->backend_name() + " (host-staged)"; }
  WorkHandle all_reduce(Tensor tensor, ReduceOp op) override;
  WorkHandle reduce_scatter(Tensor output, Tensor input, ReduceOp op) override;
  WorkHandle all_gather(Tensor output, Tensor input) override;
  WorkHandle broadcast(Tensor tensor, int root) override;
  WorkHandle barrier() override;
  std::shared_ptr<ProcessGroup> new_group(const std::vector<int>& ranks, const std::string& name) override;
  const ProcessGroup& host() const { return *host_; }

 private:
  std::shared_ptr<ProcessGroup> host_;
};

// `group` itself when `device` is the CPU, else `group` wrapped in a HostStagedProcessGroup.
std::shared_ptr<ProcessGroup> for_device(std::shared_ptr<ProcessGroup> group, Device device);

}  // namespace shardlab::dist
