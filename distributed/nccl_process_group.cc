// The NCCL process group: unique-id bootstrap, launches on the group's stream behind an event from
// the compute stream, and works that poll their completion event against the timeout.
//
// NOTE [bounded NCCL]: the communicator is created non-blocking (ncclConfig_t.blocking = 0), so
// neither its creation nor a collective launch can hang the host on a dead peer: calls return
// ncclInProgress and we poll ncclCommGetAsyncError against the deadline. On a timeout the
// communicator is aborted (ncclCommAbort frees the GPU from the stuck kernel) and, when MPI runs
// the job, the job is ended the same way the MPI backend ends it.
#include "distributed/nccl_process_group.h"

#include "cuda/stream.h"

#include <atomic>
#include <cstring>
#include <thread>

#include "core/error.h"
#include "cuda/device.h"
#include "distributed/comm_ledger.h"
#include "distributed/local_process_group.h"
#include "distributed/mpi_runtime.h"

#define SL_NCCL_CHECK(call)                                                                           \
  do {                                                                                                \
    const ncclResult_t sl_nccl_status_ = (call);                                                      \
    if (sl_nccl_status_ != ncclSuccess && sl_nccl_status_ != ncclInProgress)                          \
      SL_FAIL("NCCL error ", ncclGetErrorString(sl_nccl_status_), " in ", #call);                      \
  } while (0)

namespace shardlab::dist {

namespace {

constexpr auto kPoll = std::chrono::microseconds(20);

}  // namespace

// A communicator that a work's timeout may abort: aborting frees it, so it happens once and the
// group's destructor then leaves it alone.
struct NcclComm {
  ncclComm_t comm = nullptr;
  std::atomic<bool> aborted{false};
  void abort() {
    if (!aborted.exchange(true)) ncclCommAbort(comm);
  }
};

namespace {

// Throws `message`; when MPI runs the job, also ends it shortly after (a lost peer leaves both
// NCCL and MPI unusable).
[[noreturn]] void fail_collective(const std::string& message) {
  if (MpiRuntime::mpi_initialized()) std::thread([message] { MpiRuntime::get().terminate(message); }).detach();
  throw Error(message);
}

// Waits until a non-blocking communicator has finished its pending call; aborts it on an error
// or past `deadline`.
void wait_comm_ready(NcclComm& comm, CommClock::time_point deadline, const std::string& what) {
  for (;;) {
    ncclResult_t state = ncclSuccess;
    SL_NCCL_CHECK(ncclCommGetAsyncError(comm.comm, &state));
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) {
      comm.abort();
      fail_collective(what + " failed: NCCL " + ncclGetErrorString(state));
    }
    if (CommClock::now() > deadline) {
      comm.abort();
      fail_collective(what + " did not complete in time: a peer rank died or hung");
    }
    std::this_thread::sleep_for(kPoll);
  }
}

ncclDataType_t nccl_type(const ProcessGroup& group, CollectiveKind kind, DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8: return ncclUint8;
    case DType::i8: return ncclInt8;
    default:
      SL_FAIL(collective_name(kind), " on group '", group.name(), "': dtype ", dtype_name(t),
              " cannot be reduced by NCCL (needs f32, f64, bf16, f16, i32, i64, u8 or i8)");
  }
}

ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::sum ? ncclSum : ncclAvg; }

}  // namespace

// A collective launched on the group's stream: complete when its `done` event is.
class NcclWork final : public Work {
 public:
  NcclWork(CollectiveKind kind, std::string what, int64_t payload_bytes, int64_t wire_bytes,
           std::chrono::milliseconds timeout, std::shared_ptr<CommLedger> ledger, std::shared_ptr<NcclComm> comm,
           std::vector<Tensor> keep_alive, cudaEvent_t issued, cudaEvent_t done)
      : kind_(kind), what_(std::move(what)), payload_bytes_(payload_bytes), wire_bytes_(wire_bytes), timeout_(timeout),
        ledger_(std::move(ledger)), comm_(std::move(comm)), keep_alive_(std::move(keep_alive)), issued_event_(issued),
        done_event_(done) {}
  ~NcclWork() override {
    cudaEventDestroy(issued_event_);
    cudaEventDestroy(done_event_);
  }

  void wait() override {
    const auto entered = CommClock::now();
    while (!is_completed()) {
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm_->comm, &state);
      if (state != ncclSuccess && state != ncclInProgress) {
        comm_->abort();
        fail_collective(what_ + " failed: NCCL " + ncclGetErrorString(state));
      }
      if (CommClock::now() > issued_ + timeout_) {
        comm_->abort();
        fail_collective(what_ + " did not complete within " + human_seconds(timeout_.count() / 1000.0) +
                        ": a peer rank died or hung");
      }
      std::this_thread::sleep_for(kPoll);
    }
    ledger_->record_blocked(kind_, std::chrono::duration<double>(CommClock::now() - entered).count());
  }

  bool is_completed() override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (completed_) return true;
    const cudaError_t status = cudaEventQuery(done_event_);
    if (status == cudaErrorNotReady) return false;
    SL_CUDA_CHECK(status);
    float ms = 0;
    SL_CUDA_CHECK(cudaEventElapsedTime(&ms, issued_event_, done_event_));
    ledger_->record(kind_, payload_bytes_, wire_bytes_, ms / 1000.0);
    keep_alive_.clear();
    completed_ = true;
    return true;
  }

 private:
  const CollectiveKind kind_;
  const std::string what_;
  const int64_t payload_bytes_;
  const int64_t wire_bytes_;
  const std::chrono::milliseconds timeout_;
  const std::shared_ptr<CommLedger> ledger_;
  const std::shared_ptr<NcclComm> comm_;
  const CommClock::time_point issued_ = CommClock::now();
  std::mutex mutex_;
  std::vector<Tensor> keep_alive_;
  cudaEvent_t issued_event_;
  cudaEvent_t done_event_;
  bool completed_ = false;
};

std::shared_ptr<NcclProcessGroup> NcclProcessGroup::create(std::shared_ptr<ProcessGroup> bootstrap, int device) {
  SL_CHECK(bootstrap != nullptr, "NcclProcessGroup: no bootstrap group");
  SL_CHECK(device >= 0 && device < cuda::device_count(), "NcclProcessGroup '", bootstrap->name(), "': CUDA device ",
           device, " does not exist (", cuda::device_count(), " visible)");
  SL_CUDA_CHECK(cudaSetDevice(device));
  ncclUniqueId id;
  Tensor id_bytes = Tensor::zeros({static_cast<int64_t>(sizeof id)}, DType::u8);
  if (bootstrap->rank() == 0) {
    SL_NCCL_CHECK(ncclGetUniqueId(&id));
    std::memcpy(id_bytes.raw_data(), &id, sizeof id);
  }
  bootstrap->broadcast(id_bytes, 0)->wait();
  std::memcpy(&id, id_bytes.raw_data(), sizeof id);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // NOTE [bounded NCCL]
  auto comm = std::make_shared<NcclComm>();
  SL_NCCL_CHECK(ncclCommInitRankConfig(&comm->comm, bootstrap->size(), id, bootstrap->rank(), &config));
  wait_comm_ready(*comm, CommClock::now() + bootstrap->timeout(),
                  "rank " + std::to_string(bootstrap->world_ranks()[bootstrap->rank()]) +
                      ": creating the NCCL communicator of group '" + bootstrap->name() + "'");
  return std::make_shared<NcclProcessGroup>(std::move(bootstrap), device, comm);
}

NcclProcessGroup::NcclProcessGroup(std::shared_ptr<ProcessGroup> bootstrap, int device, std::shared_ptr<NcclComm> comm)
    : ProcessGroup(bootstrap->rank(), bootstrap->world_ranks(), bootstrap->name(), bootstrap->shared_ledger()),
      bootstrap_(std::move(bootstrap)), device_(device), comm_(std::move(comm)) {
  set_timeout(bootstrap_->timeout());
  SL_CUDA_CHECK(cudaSetDevice(device_));
  SL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  SL_CUDA_CHECK(cudaMalloc(&barrier_scratch_, sizeof(float)));
}

NcclProcessGroup::~NcclProcessGroup() {
  cudaSetDevice(device_);
  if (!comm_->aborted.load()) {
    // Finalise (flushes queued collectives), then destroy; a communicator that does not finish in
    // time or reports an error is aborted instead. No throwing from a destructor.
    ncclResult_t state = ncclCommFinalize(comm_->comm);
    const auto deadline = CommClock::now() + timeout();
    while (state == ncclInProgress && CommClock::now() < deadline) {
      std::this_thread::sleep_for(kPoll);
      if (ncclCommGetAsyncError(comm_->comm, &state) != ncclSuccess) state = ncclInternalError;
    }
    if (state == ncclSuccess)
      ncclCommDestroy(comm_->comm);
    else
      comm_->abort();
  }
  cudaFree(barrier_scratch_);
  cudaStreamDestroy(stream_);
}

void NcclProcessGroup::check_tensor(CollectiveKind kind, const Tensor& t) const {
  SL_CHECK(t.device() == Device::cuda(device_), collective_name(kind), " on group '", name(),
           "': the NCCL backend takes tensors on cuda:", device_, ", got one on ", t.device().str());
}

WorkHandle NcclProcessGroup::launch(CollectiveKind kind, int64_t payload_bytes, std::vector<Tensor> keep_alive,
                                    const std::function<ncclResult_t(cudaStream_t)>& call) {
  const int64_t seq = ++collectives_issued_;
  const std::string what = "rank " + std::to_string(world_ranks_[rank_]) + ": " + collective_name(kind) + " #" +
                           std::to_string(seq) + " on group '" + name() + "' (" + human_bytes(payload_bytes) + ", nccl)";
  SL_CUDA_CHECK(cudaSetDevice(device_));
  cudaEvent_t issued = nullptr, done = nullptr;
  SL_CUDA_CHECK(cudaEventCreate(&issued));
  SL_CUDA_CHECK(cudaEventCreate(&done));
  // The collective starts once the compute stream (where every op kernel runs, cuda/stream.h) has
  // produced its inputs; the caller's wait() then orders later work after `done` on the host.
  SL_CUDA_CHECK(cudaEventRecord(issued, cuda::compute_stream(device_)));
  SL_CUDA_CHECK(cudaStreamWaitEvent(stream_, issued, 0));
  const ncclResult_t launched = call(stream_);
  SL_NCCL_CHECK(launched);
  if (launched == ncclInProgress) wait_comm_ready(*comm_, CommClock::now() + timeout(), what + " (launch)");
  SL_CUDA_CHECK(cudaEventRecord(done, stream_));
  auto work = std::make_shared<NcclWork>(kind, what, payload_bytes, ring_wire_bytes(kind, payload_bytes, size()),
                                         timeout(), ledger_, comm_, std::move(keep_alive), issued, done);
  std::lock_guard<std::mutex> lock(in_flight_mutex_);
  while (!in_flight_.empty() && in_flight_.front()->is_completed()) in_flight_.pop_front();
  in_flight_.push_back(work);
  return work;
}

WorkHandle NcclProcessGroup::all_reduce(Tensor tensor, ReduceOp op) {
  constexpr CollectiveKind kind = CollectiveKind::all_reduce;
  check_collective_args(*this, kind, tensor, Tensor());
  check_tensor(kind, tensor);
  const ncclDataType_t type = nccl_type(*this, kind, tensor.dtype());
  return launch(kind, tensor.nbytes(), {tensor}, [&](cudaStream_t s) {
    return ncclAllReduce(tensor.raw_data(), tensor.raw_data(), tensor.numel(), type, nccl_op(op), comm_->comm, s);
  });
}

WorkHandle NcclProcessGroup::reduce_scatter(Tensor output, Tensor input, ReduceOp op) {
  constexpr CollectiveKind kind = CollectiveKind::reduce_scatter;
  check_collective_args(*this, kind, output, input);
  check_tensor(kind, output);
  const ncclDataType_t type = nccl_type(*this, kind, input.dtype());
  return launch(kind, input.nbytes(), {output, input}, [&](cudaStream_t s) {
    return ncclReduceScatter(input.raw_data(), output.raw_data(), output.numel(), type, nccl_op(op), comm_->comm, s);
  });
}

WorkHandle NcclProcessGroup::all_gather(Tensor output, Tensor input) {
  constexpr CollectiveKind kind = CollectiveKind::all_gather;
  check_collective_args(*this, kind, output, input);
  check_tensor(kind, output);
  SL_CHECK(output.nbytes() == size() * input.nbytes(), "all_gather on group '", name(), "': output of ", output.nbytes(),
           " bytes is not ", size(), " x the input's ", input.nbytes(), " bytes");
  // Bytes, so any dtype moves; in place when the input is this rank's chunk of the output.
  return launch(kind, output.nbytes(), {output, input}, [&](cudaStream_t s) {
    return ncclAllGather(input.raw_data(), output.raw_data(), input.nbytes(), ncclUint8, comm_->comm, s);
  });
}

WorkHandle NcclProcessGroup::broadcast(Tensor tensor, int root) {
  constexpr CollectiveKind kind = CollectiveKind::broadcast;
  check_collective_args(*this, kind, tensor, Tensor());
  check_tensor(kind, tensor);
  SL_CHECK(root >= 0 && root < size(), "broadcast on group '", name(), "': root ", root, " is not a rank of a group of size ",
           size());
  return launch(kind, tensor.nbytes(), {tensor}, [&](cudaStream_t s) {
    return ncclBroadcast(tensor.raw_data(), tensor.raw_data(), tensor.nbytes(), ncclUint8, root, comm_->comm, s);
  });
}

WorkHandle NcclProcessGroup::barrier() {
  // NCCL has no barrier: an all_reduce of one device float orders every rank's stream the same way.
  return launch(CollectiveKind::barrier, 0, {}, [&](cudaStream_t s) {
    return ncclAllReduce(barrier_scratch_, barrier_scratch_, 1, ncclFloat32, ncclSum, comm_->comm, s);
  });
}

std::shared_ptr<ProcessGroup> NcclProcessGroup::new_group(const std::vector<int>& ranks, const std::string& name) {
  std::shared_ptr<ProcessGroup> sub_bootstrap = bootstrap_->new_group(ranks, name);
  if (!sub_bootstrap) return nullptr;
  return create(std::move(sub_bootstrap), device_);
}

}  // namespace shardlab::dist
