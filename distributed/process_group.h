// ProcessGroup: the collectives every sharding strategy is built from (all_reduce, reduce_scatter,
// all_gather, broadcast, barrier), asynchronous, each returning a Work handle to wait on.
// Backends: LocalProcessGroup (world size 1, no MPI), MPI for CPU tensors, NCCL for CUDA tensors.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace shardlab::dist {

class CommLedger;

enum class ReduceOp { sum, avg };
enum class CollectiveKind { all_reduce, reduce_scatter, all_gather, broadcast, barrier };
const char* collective_name(CollectiveKind kind);

// A collective in flight. wait() blocks until it finished and throws shardlab::Error naming the
// collective, the group and the elapsed time when it failed or exceeded the group's timeout.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
  virtual bool is_completed() = 0;
};
using WorkHandle = std::shared_ptr<Work>;

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;

  int rank() const { return rank_; }
  int size() const { return static_cast<int>(world_ranks_.size()); }
  // This group's members as ranks of the world group, in group-rank order.
  const std::vector<int>& world_ranks() const { return world_ranks_; }
  virtual std::string backend_name() const = 0;
  // A short name for errors and ledgers, e.g. "world" or "shard[0,1]".
  const std::string& name() const { return name_; }

  // All tensors must be contiguous and of one dtype per call; the work handle keeps them alive.
  // In place: every rank ends with the reduction of all ranks' `tensor`.
  virtual WorkHandle all_reduce(Tensor tensor, ReduceOp op = ReduceOp::sum) = 0;
  // input.numel() == size() * output.numel(); rank r receives the reduction of chunk r of input.
  virtual WorkHandle reduce_scatter(Tensor output, Tensor input, ReduceOp op = ReduceOp::sum) = 0;
  // output.numel() == size() * input.numel(); chunk r of output is rank r's input.
  virtual WorkHandle all_gather(Tensor output, Tensor input) = 0;
  // In place: every rank ends with root's `tensor` (root is a rank of this group).
  virtual WorkHandle broadcast(Tensor tensor, int root = 0) = 0;
  virtual WorkHandle barrier() = 0;

  // A sub-group of `ranks` (ranks of this group). Collective over this group: every member calls it
  // with the same list, members of `ranks` get the sub-group, the others get nullptr.
  virtual std::shared_ptr<ProcessGroup> new_group(const std::vector<int>& ranks, const std::string& name) = 0;

  // Every collective is recorded here (calls, bytes, time); the ledger only observes.
  CommLedger& ledger() const { return *ledger_; }
  // The same ledger as a handle, for a group built on this one (the NCCL group over its bootstrap).
  const std::shared_ptr<CommLedger>& shared_ledger() const { return ledger_; }

  // A collective that has not completed after this long fails (a dead or hung peer).
  std::chrono::milliseconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }

 protected:
  ProcessGroup(int rank, std::vector<int> world_ranks, std::string name, std::shared_ptr<CommLedger> ledger);

  int rank_;
  std::vector<int> world_ranks_;
  std::string name_;
  std::shared_ptr<CommLedger> ledger_;
  std::chrono::milliseconds timeout_{std::chrono::minutes(5)};
};

}  // namespace shardlab::dist
