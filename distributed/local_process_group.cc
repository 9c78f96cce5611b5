// The world-size-1 process group and the argument checks every backend shares.
#include "distributed/local_process_group.h"

#include "core/error.h"
#include "core/ops/views.h"
#include "core/trace.h"
#include "distributed/comm_ledger.h"
#include "distributed/tracing.h"

namespace shardlab::dist {

ProcessGroup::ProcessGroup(int rank, std::vector<int> world_ranks, std::string name, std::shared_ptr<CommLedger> ledger)
    : rank_(rank), world_ranks_(std::move(world_ranks)), name_(std::move(name)), ledger_(std::move(ledger)) {
  if (!ledger_) ledger_ = std::make_shared<CommLedger>();
}

namespace {
class CompletedWork final : public Work {
 public:
  void wait() override {}
  bool is_completed() override { return true; }
};
}  // namespace

void check_collective_args(const ProcessGroup& group, CollectiveKind kind, const Tensor& output, const Tensor& input) {
  const char* op = collective_name(kind);
  auto where = [&] { return std::string(op) + " on group '" + group.name() + "'"; };
  SL_CHECK(output.defined(), where(), ": undefined tensor");
  SL_CHECK(output.is_contiguous(), where(), ": tensor of shape ", shape_str(output.shape()), " is not contiguous");
  if (!input.defined()) return;
  SL_CHECK(input.is_contiguous(), where(), ": input of shape ", shape_str(input.shape()), " is not contiguous");
  SL_CHECK(input.dtype() == output.dtype(), where(), ": input dtype ", dtype_name(input.dtype()), " != output dtype ",
           dtype_name(output.dtype()));
  SL_CHECK(input.device() == output.device(), where(), ": input and output on different devices");
  const int64_t n = group.size();
  if (kind == CollectiveKind::reduce_scatter)
    SL_CHECK(input.numel() == n * output.numel(), where(), ": input of shape ", shape_str(input.shape()),
             " must hold ", n, " x the output's ", output.numel(), " elements (output ", shape_str(output.shape()), ")");
  if (kind == CollectiveKind::all_gather)
    SL_CHECK(output.numel() == n * input.numel(), where(), ": output of shape ", shape_str(output.shape()),
             " must hold ", n, " x the input's ", input.numel(), " elements (input ", shape_str(input.shape()), ")");
}

LocalProcessGroup::LocalProcessGroup(std::shared_ptr<CommLedger> ledger)
    : ProcessGroup(0, {0}, "world", std::move(ledger)) {}

WorkHandle LocalProcessGroup::all_reduce(Tensor tensor, ReduceOp) {
  const trace::Scope span("all_reduce", trace::Category::collective,
                          [&] { return collective_trace_args(CollectiveKind::all_reduce, name(), tensor.nbytes()); });
  check_collective_args(*this, CollectiveKind::all_reduce, tensor, Tensor());
  ledger().record(CollectiveKind::all_reduce, tensor.nbytes(), 0, 0.0);
  return std::make_shared<CompletedWork>();
}

WorkHandle LocalProcessGroup::reduce_scatter(Tensor output, Tensor input, ReduceOp) {
  const trace::Scope span("reduce_scatter", trace::Category::collective,
                          [&] { return collective_trace_args(CollectiveKind::reduce_scatter, name(), input.nbytes()); });
  check_collective_args(*this, CollectiveKind::reduce_scatter, output, input);
  ops::copy_(output, ops::view(input, output.shape()));
  ledger().record(CollectiveKind::reduce_scatter, input.nbytes(), 0, 0.0);
  return std::make_shared<CompletedWork>();
}

WorkHandle LocalProcessGroup::all_gather(Tensor output, Tensor input) {
  const trace::Scope span("all_gather", trace::Category::collective,
                          [&] { return collective_trace_args(CollectiveKind::all_gather, name(), output.nbytes()); });
  check_collective_args(*this, CollectiveKind::all_gather, output, input);
  ops::copy_(output, ops::view(input, output.shape()));
  ledger().record(CollectiveKind::all_gather, output.nbytes(), 0, 0.0);
  return std::make_shared<CompletedWork>();
}

WorkHandle LocalProcessGroup::broadcast(Tensor tensor, int root) {
  const trace::Scope span("broadcast", trace::Category::collective,
                          [&] { return collective_trace_args(CollectiveKind::broadcast, name(), tensor.nbytes()); });
  check_collective_args(*this, CollectiveKind::broadcast, tensor, Tensor());
  SL_CHECK(root == 0, "broadcast on group '", name(), "': root ", root, " is not a rank of a group of size 1");
  ledger().record(CollectiveKind::broadcast, tensor.nbytes(), 0, 0.0);
  return std::make_shared<CompletedWork>();
}

WorkHandle LocalProcessGroup::barrier() {
  const trace::Scope span("barrier", trace::Category::collective,
                          [&] { return collective_trace_args(CollectiveKind::barrier, name(), 0); });
  ledger().record(CollectiveKind::barrier, 0, 0, 0.0);
  return std::make_shared<CompletedWork>();
}

std::shared_ptr<ProcessGroup> LocalProcessGroup::new_group(const std::vector<int>& ranks, const std::string& name) {
  SL_CHECK(ranks == std::vector<int>{0}, "new_group '", name, "': a group of size 1 has only rank 0");
  auto sub = std::make_shared<LocalProcessGroup>(ledger_);  // sub-groups share the ledger, as MPI ones do
  sub->set_timeout(timeout());
  return sub;
}

}  // namespace shardlab::dist
