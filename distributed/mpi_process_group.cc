// The MPI process group: argument checks and byte counts on the caller's thread, then each
// collective handed to the communication thread as a non-blocking MPI call.
//
// NOTE [16-bit reductions]: bf16 and f16 are summed in f32 and rounded once. MPI has no 16-bit
// float types, and a user-defined MPI_Op over 2-byte elements would have to store every partial
// sum back in 16 bits: N-1 roundings whose result depends on the algorithm's reduction order. So
// the communication thread widens the tensor into an f32 staging buffer (tagged communication),
// reduces that with MPI_SUM, and rounds the sum (divided by the size for avg) once on the way back.
// The cost is twice the bytes on the wire; the gain is a result that is the correctly rounded f32
// sum, the same on every rank.
#include "distributed/mpi_process_group.h"

#include <climits>

#include "core/error.h"
#include "core/memory_ledger.h"
#include "distributed/comm_ledger.h"
#include "distributed/local_process_group.h"
#include "distributed/mpi_runtime.h"

namespace shardlab::dist {

namespace {

bool is_16bit_float(DType t) { return t == DType::bf16 || t == DType::f16; }

// The MPI type a reduction runs in; 16-bit floats run in MPI_FLOAT through a staging buffer.
MPI_Datatype reduction_type(const ProcessGroup& group, CollectiveKind kind, DType t) {
  switch (t) {
    case DType::f32:
    case DType::bf16:
    case DType::f16: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: return MPI_UINT8_T;
    case DType::i8: return MPI_INT8_T;
    default:
      SL_FAIL(collective_name(kind), " on group '", group.name(), "': dtype ", dtype_name(t),
              " cannot be reduced (needs f32, f64, bf16, f16, i32, i64, u8 or i8)");
  }
}

// MPI counts are ints.
int mpi_count(const ProcessGroup& group, CollectiveKind kind, int64_t n) {
  SL_CHECK(n <= INT_MAX, collective_name(kind), " on group '", group.name(), "': ", n,
           " elements exceed MPI's int count limit; split the tensor into buckets");
  return static_cast<int>(n);
}

Tensor staging_f32(int64_t numel) {
  MemTagScope scope(MemTag::communication);
  return Tensor::empty({numel}, DType::f32);
}

void widen_to_f32(const Tensor& src, const Tensor& dst) {
  float* out = dst.data<float>();
  const int64_t n = src.numel();
  if (src.dtype() == DType::bf16) {
    const bf16_t* in = src.data<bf16_t>();
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]);
  } else {
    const f16_t* in = src.data<f16_t>();
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]);
  }
}

// dst = round(src / divisor): the one rounding of a 16-bit reduction.
void narrow_from_f32(const Tensor& src, const Tensor& dst, float divisor) {
  const float* in = src.data<float>();
  const int64_t n = dst.numel();
  if (dst.dtype() == DType::bf16) {
    bf16_t* out = dst.data<bf16_t>();
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<bf16_t>(in[i] / divisor);
  } else {
    f16_t* out = dst.data<f16_t>();
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<f16_t>(in[i] / divisor);
  }
}

// avg after an MPI_SUM: divide in place by the group size (C++ semantics, so integers truncate).
void divide_in_place(const Tensor& t, int divisor) {
  dispatch_numeric(t.dtype(), "avg", [&]<typename T>() {
    T* p = t.data<T>();
    const int64_t n = t.numel();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(p[i] / static_cast<T>(divisor));
  });
}

bool bytes_overlap(const Tensor& a, const Tensor& b) {
  const char* a0 = static_cast<const char*>(a.raw_data());
  const char* b0 = static_cast<const char*>(b.raw_data());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

void check_cpu(const ProcessGroup& group, CollectiveKind kind, const Tensor& t) {
  SL_CHECK(t.device().is_cpu(), collective_name(kind), " on group '", group.name(), "': the MPI backend takes CPU tensors, got one on ",
           t.device().str(), " (use the NCCL group for CUDA tensors)");
}

}  // namespace

MpiProcessGroup::MpiProcessGroup(int rank, std::vector<int> world_ranks, std::string name,
                                 std::shared_ptr<CommLedger> ledger, MPI_Comm comm, std::chrono::milliseconds timeout)
    : ProcessGroup(rank, std::move(world_ranks), std::move(name), std::move(ledger)), comm_(comm) {
  set_timeout(timeout);
}

MpiProcessGroup::~MpiProcessGroup() {
  MpiRuntime::get().post([comm = comm_]() mutable { MPI_Comm_free(&comm); });
}

std::shared_ptr<MpiProcessGroup> MpiProcessGroup::world(std::chrono::milliseconds timeout,
                                                        std::shared_ptr<CommLedger> ledger) {
  MpiRuntime& runtime = MpiRuntime::get();
  MPI_Comm comm = MPI_COMM_NULL;
  runtime.run("creating the world group (MPI_Comm_dup)", timeout, [&] {
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);  // errors reach our message, not MPI's abort
  });
  std::vector<int> ranks(runtime.world_size());
  for (int r = 0; r < runtime.world_size(); ++r) ranks[r] = r;
  return std::make_shared<MpiProcessGroup>(runtime.world_rank(), std::move(ranks), "world", std::move(ledger), comm,
                                           timeout);
}

std::shared_ptr<MpiWork> MpiProcessGroup::make_work(CollectiveKind kind, int64_t payload_bytes) {
  const int64_t seq = ++collectives_issued_;
  std::string what = "rank " + std::to_string(world_ranks_[rank_]) + ": " + collective_name(kind) + " #" +
                     std::to_string(seq) + " on group '" + name() + "' (" + human_bytes(payload_bytes) + ")";
  return std::make_shared<MpiWork>(kind, std::move(what), name(), payload_bytes, ring_wire_bytes(kind, payload_bytes, size()),
                                   timeout(), ledger_);
}

WorkHandle MpiProcessGroup::submit(CollectiveKind kind, int64_t payload_bytes, MpiCollective collective) {
  std::shared_ptr<MpiWork> work = make_work(kind, payload_bytes);
  collective.work = work;
  collective.comm = comm_;
  MpiRuntime::get().submit(std::move(collective));
  return work;
}

WorkHandle MpiProcessGroup::all_reduce(Tensor tensor, ReduceOp op) {
  constexpr CollectiveKind kind = CollectiveKind::all_reduce;
  check_collective_args(*this, kind, tensor, Tensor());
  check_cpu(*this, kind, tensor);
  const MPI_Datatype type = reduction_type(*this, kind, tensor.dtype());
  const int count = mpi_count(*this, kind, tensor.numel());
  const int n = size();
  MpiCollective c;
  if (is_16bit_float(tensor.dtype())) {
    Tensor staged = staging_f32(tensor.numel());
    c.start = [=, comm = comm_](MPI_Request* request) {
      widen_to_f32(tensor, staged);
      return MPI_Iallreduce(MPI_IN_PLACE, staged.raw_data(), count, type, MPI_SUM, comm, request);
    };
    c.finish = [=] { narrow_from_f32(staged, tensor, op == ReduceOp::avg ? static_cast<float>(n) : 1.0f); };
  } else {
    c.start = [=, comm = comm_](MPI_Request* request) {
      return MPI_Iallreduce(MPI_IN_PLACE, tensor.raw_data(), count, type, MPI_SUM, comm, request);
    };
    c.finish = [=] {
      if (op == ReduceOp::avg) divide_in_place(tensor, n);
    };
  }
  return submit(kind, tensor.nbytes(), std::move(c));
}

WorkHandle MpiProcessGroup::reduce_scatter(Tensor output, Tensor input, ReduceOp op) {
  constexpr CollectiveKind kind = CollectiveKind::reduce_scatter;
  check_collective_args(*this, kind, output, input);
  check_cpu(*this, kind, output);
  SL_CHECK(!bytes_overlap(output, input), "reduce_scatter on group '", name(), "': the output ",
           shape_str(output.shape()), " overlaps the input ", shape_str(input.shape()));
  const MPI_Datatype type = reduction_type(*this, kind, input.dtype());
  mpi_count(*this, kind, input.numel());
  const int count = mpi_count(*this, kind, output.numel());
  const int n = size();
  MpiCollective c;
  if (is_16bit_float(input.dtype())) {
    Tensor staged_in = staging_f32(input.numel());
    Tensor staged_out = staging_f32(output.numel());
    c.start = [=, comm = comm_](MPI_Request* request) {
      widen_to_f32(input, staged_in);
      return MPI_Ireduce_scatter_block(staged_in.raw_data(), staged_out.raw_data(), count, type, MPI_SUM, comm, request);
    };
    c.finish = [=] { narrow_from_f32(staged_out, output, op == ReduceOp::avg ? static_cast<float>(n) : 1.0f); };
  } else {
    c.start = [=, comm = comm_](MPI_Request* request) {
      return MPI_Ireduce_scatter_block(input.raw_data(), output.raw_data(), count, type, MPI_SUM, comm, request);
    };
    c.finish = [=] {
      if (op == ReduceOp::avg) divide_in_place(output, n);
    };
  }
  return submit(kind, input.nbytes(), std::move(c));
}

WorkHandle MpiProcessGroup::all_gather(Tensor output, Tensor input) {
  constexpr CollectiveKind kind = CollectiveKind::all_gather;
  check_collective_args(*this, kind, output, input);
  check_cpu(*this, kind, output);
  const int64_t chunk_bytes = input.nbytes();
  SL_CHECK(output.nbytes() == size() * chunk_bytes, "all_gather on group '", name(), "': ", dtype_name(output.dtype()),
           " output of ", output.nbytes(), " bytes is not ", size(), " x the input's ", chunk_bytes, " bytes");
  const int count = mpi_count(*this, kind, chunk_bytes);
  // In place when the input is this rank's chunk of the output; any other overlap is an error.
  const char* own_chunk = static_cast<const char*>(output.raw_data()) + rank() * chunk_bytes;
  const bool in_place = input.raw_data() == own_chunk;
  SL_CHECK(in_place || !bytes_overlap(output, input), "all_gather on group '", name(), "': the input ",
           shape_str(input.shape()), " overlaps the output ", shape_str(output.shape()),
           " other than as this rank's chunk");
  MpiCollective c;
  c.start = [=, comm = comm_](MPI_Request* request) {
    const void* send = in_place ? MPI_IN_PLACE : input.raw_data();
    return MPI_Iallgather(send, count, MPI_BYTE, output.raw_data(), count, MPI_BYTE, comm, request);
  };
  return submit(kind, output.nbytes(), std::move(c));
}

WorkHandle MpiProcessGroup::broadcast(Tensor tensor, int root) {
  constexpr CollectiveKind kind = CollectiveKind::broadcast;
  check_collective_args(*this, kind, tensor, Tensor());
  check_cpu(*this, kind, tensor);
  SL_CHECK(root >= 0 && root < size(), "broadcast on group '", name(), "': root ", root, " is not a rank of a group of size ",
           size());
  const int count = mpi_count(*this, kind, tensor.nbytes());
  MpiCollective c;
  c.start = [=, comm = comm_](MPI_Request* request) {
    return MPI_Ibcast(tensor.raw_data(), count, MPI_BYTE, root, comm, request);
  };
  return submit(kind, tensor.nbytes(), std::move(c));
}

WorkHandle MpiProcessGroup::barrier() {
  MpiCollective c;
  c.start = [comm = comm_](MPI_Request* request) { return MPI_Ibarrier(comm, request); };
  return submit(CollectiveKind::barrier, 0, std::move(c));
}

std::shared_ptr<ProcessGroup> MpiProcessGroup::new_group(const std::vector<int>& ranks, const std::string& name) {
  SL_CHECK(!ranks.empty(), "new_group '", name, "': no ranks");
  std::vector<bool> seen(size(), false);
  int my_index = -1;
  for (size_t i = 0; i < ranks.size(); ++i) {
    const int r = ranks[i];
    SL_CHECK(r >= 0 && r < size(), "new_group '", name, "': rank ", r, " is not a rank of group '", this->name(),
             "' (size ", size(), ")");
    SL_CHECK(!seen[r], "new_group '", name, "': rank ", r, " is listed twice");
    seen[r] = true;
    if (r == rank()) my_index = static_cast<int>(i);
  }
  const int tag = new_groups_created_++ % 32768;  // MPI guarantees tags up to 32767
  if (my_index < 0) return nullptr;
  MPI_Comm sub = MPI_COMM_NULL;
  MpiRuntime::get().run("new_group '" + name + "' (MPI_Comm_create_group)", timeout(), [&] {
    MPI_Group parent_group = MPI_GROUP_NULL;
    MPI_Group member_group = MPI_GROUP_NULL;
    MPI_Comm_group(comm_, &parent_group);
    MPI_Group_incl(parent_group, static_cast<int>(ranks.size()), ranks.data(), &member_group);
    const int rc = MPI_Comm_create_group(comm_, member_group, tag, &sub);
    MPI_Group_free(&member_group);
    MPI_Group_free(&parent_group);
    SL_CHECK(rc == MPI_SUCCESS, "new_group '", name, "': MPI_Comm_create_group failed with MPI error ", rc);
    MPI_Comm_set_errhandler(sub, MPI_ERRORS_RETURN);
  });
  std::vector<int> world_ranks;
  for (int r : ranks) world_ranks.push_back(world_ranks_[r]);
  return std::make_shared<MpiProcessGroup>(my_index, std::move(world_ranks), name, ledger_, sub, timeout());
}

}  // namespace shardlab::dist
