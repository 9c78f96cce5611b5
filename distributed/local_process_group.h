// The world-size-1 process group: what a run without mpirun uses. Every collective is complete on
// return (reduce_scatter and all_gather copy, the rest leave the tensor as it is) and is still
// recorded in the ledger, so a single-process run reports its (zero-byte) communication too.
#pragma once

#include "distributed/process_group.h"

namespace shardlab::dist {

class LocalProcessGroup final : public ProcessGroup {
 public:
  explicit LocalProcessGroup(std::shared_ptr<CommLedger> ledger = nullptr);
  std::string backend_name() const override { return "local"; }
  WorkHandle all_reduce(Tensor tensor, ReduceOp op) override;
  WorkHandle reduce_scatter(Tensor output, Tensor input, ReduceOp op) override;
  WorkHandle all_gather(Tensor output, Tensor input) override;
  WorkHandle broadcast(Tensor tensor, int root) override;
  WorkHandle barrier() override;
  std::shared_ptr<ProcessGroup> new_group(const std::vector<int>& ranks, const std::string& name) override;
};

// Argument checks shared by every backend: contiguity, one dtype, the size relations; errors name
// the collective, the group and the shapes.
void check_collective_args(const ProcessGroup& group, CollectiveKind kind, const Tensor& output, const Tensor& input);

}  // namespace shardlab::dist
