// The NCCL process group for CUDA tensors: bootstrapped by broadcasting the ncclUniqueId over an
// MPI (or, at world size 1, local) group, collectives on the group's own CUDA stream ordered after
// the compute stream's work by events. Work::wait() polls the completion event against the group's timeout
// and aborts the communicator (ncclCommAbort) on expiry. Built only when CUDA and NCCL are found.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <deque>
#include <mutex>

#include "distributed/process_group.h"

namespace shardlab::dist {

class NcclWork;
struct NcclComm;

class NcclProcessGroup final : public ProcessGroup {
 public:
  // Collective over `bootstrap`: its rank 0 makes the unique id, `bootstrap` broadcasts it, and
  // every rank joins one NCCL communicator on CUDA device `device`. Same ranks, name, ledger and
  // timeout as `bootstrap`.
  static std::shared_ptr<NcclProcessGroup> create(std::shared_ptr<ProcessGroup> bootstrap, int device);
  ~NcclProcessGroup() override;

  std::string backend_name() const override { return "nccl"; }
  // Tensors live on CUDA device `device()`. Dtypes: f32, f64, bf16, f16, i32, i64, u8, i8 (NCCL's
  // own; avg is ncclAvg). Collectives are ordered after the work already queued on the device's
  // compute stream (cuda::compute_stream), where every op kernel runs.
  WorkHandle all_reduce(Tensor tensor, ReduceOp op) override;
  WorkHandle reduce_scatter(Tensor output, Tensor input, ReduceOp op) override;
  WorkHandle all_gather(Tensor output, Tensor input) override;
  WorkHandle broadcast(Tensor tensor, int root) override;
  WorkHandle barrier() override;
  // A sub-group of the bootstrap group, then its own NCCL communicator.
  std::shared_ptr<ProcessGroup> new_group(const std::vector<int>& ranks, const std::string& name) override;

  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }

  NcclProcessGroup(std::shared_ptr<ProcessGroup> bootstrap, int device, std::shared_ptr<NcclComm> comm);

 private:
  // Orders `call` after the compute stream, runs it on the group's stream and returns its work.
  WorkHandle launch(CollectiveKind kind, int64_t payload_bytes, std::vector<Tensor> keep_alive,
                    const std::function<ncclResult_t(cudaStream_t)>& call);
  void check_tensor(CollectiveKind kind, const Tensor& t) const;

  std::shared_ptr<ProcessGroup> bootstrap_;
  int device_;
  std::shared_ptr<NcclComm> comm_;  // shared with the works, which may abort it
  cudaStream_t stream_ = nullptr;
  float* barrier_scratch_ = nullptr;  // one device float that barrier() all-reduces
  std::atomic<int64_t> collectives_issued_{0};
  // Launched works, kept until complete so their tensors outlive the kernels even when the
  // caller drops the handle.
  std::mutex in_flight_mutex_;
  std::deque<std::shared_ptr<NcclWork>> in_flight_;
};

}  // namespace shardlab::dist
