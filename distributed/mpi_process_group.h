// The MPI process group for CPU tensors: every collective is a non-blocking MPI call posted and
// polled by the process's communication thread (distributed/mpi_runtime.h), so the caller keeps
// computing until it waits; a collective past the group's timeout ends the job with a clear error.
#pragma once

#include <mpi.h>

#include <atomic>

#include "distributed/process_group.h"

namespace shardlab::dist {

class MpiWork;
struct MpiCollective;

class MpiProcessGroup final : public ProcessGroup {
 public:
  // Every rank of MPI_COMM_WORLD, over a duplicate of it (the program's own MPI traffic never mixes
  // with ours). Initialises MPI if needed. Collective over the world.
  static std::shared_ptr<MpiProcessGroup> world(std::chrono::milliseconds timeout,
                                                std::shared_ptr<CommLedger> ledger = nullptr);

  // Frees the communicator on the communication thread, after the collectives already queued on it.
  ~MpiProcessGroup() override;

  std::string backend_name() const override { return "mpi"; }
  // Collectives are posted in call order, and every rank must call them in the same order: issue a
  // group's collectives from one thread (or serialise the callers).
  // Reductions: f32, f64, i32, i64, u8, i8 natively; bf16 and f16 are summed in f32 and rounded once
  // (see NOTE [16-bit reductions]). avg = sum, then divided by size() (integers: truncating, as C++).
  WorkHandle all_reduce(Tensor tensor, ReduceOp op) override;
  WorkHandle reduce_scatter(Tensor output, Tensor input, ReduceOp op) override;
  // all_gather and broadcast move bytes and take any dtype. all_gather may run in place: `input`
  // may be this rank's chunk of `output` (the FSDP layout).
  WorkHandle all_gather(Tensor output, Tensor input) override;
  WorkHandle broadcast(Tensor tensor, int root) override;
  WorkHandle barrier() override;
  // Members create the communicator (MPI_Comm_create_group: only members take part); non-members
  // get nullptr at once. The sub-group shares this group's ledger and timeout.
  std::shared_ptr<ProcessGroup> new_group(const std::vector<int>& ranks, const std::string& name) override;

  MpiProcessGroup(int rank, std::vector<int> world_ranks, std::string name, std::shared_ptr<CommLedger> ledger,
                  MPI_Comm comm, std::chrono::milliseconds timeout);

 private:
  // A work handle named "rank R: KIND #SEQ on group 'NAME' (BYTES)" and its ledger figures.
  std::shared_ptr<MpiWork> make_work(CollectiveKind kind, int64_t payload_bytes);
  WorkHandle submit(CollectiveKind kind, int64_t payload_bytes, MpiCollective collective);

  MPI_Comm comm_;
  std::atomic<int64_t> collectives_issued_{0};
  int new_groups_created_ = 0;  // tags MPI_Comm_create_group calls; every member counts alike
};

}  // namespace shardlab::dist
