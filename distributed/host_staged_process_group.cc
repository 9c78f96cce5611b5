// HostStagedProcessGroup: device tensors staged through host copies around the wrapped group's
// collectives; the copy back to the device happens when the work is waited on (or seen complete).
#include "distributed/host_staged_process_group.h"

#include "core/ops.h"

namespace shardlab::dist {

namespace {

// The host half of a staged tensor: the tensor itself when it is on the CPU already.
Tensor on_host(const Tensor& t) { return t.device().is_cpu() ? t : t.to(Device::cpu()); }

// Waits for the host collective, then copies its result (`host_result`) into the device tensor
// (`device_result`) once; both undefined when nothing comes back (barrier, CPU tensors).
class StagedWork final : public Work {
 public:
  StagedWork(WorkHandle host_work, Tensor host_result, Tensor device_result)
      : host_work_(std::move(host_work)), host_result_(std::move(host_result)), device_result_(std::move(device_result)) {}
  void wait() override {
    host_work_->wait();
    finish();
  }
  bool is_completed() override {
    if (!done_ && host_work_->is_completed()) wait();
    return done_;
  }

 private:
  void finish() {
    if (done_) return;
    if (device_result_.defined() && !device_result_.is_same(host_result_)) ops::copy_(device_result_, host_result_);
    done_ = true;
  }
  WorkHandle host_work_;
  Tensor host_result_, device_result_;
  bool done_ = false;
};

}  // namespace

HostStagedProcessGroup::HostStagedProcessGroup(std::shared_ptr<ProcessGroup> host)
    : ProcessGroup(host->rank(), host->world_ranks(), host->name(), host->shared_ledger()), host_(std::move(host)) {
  set_timeout(host_->timeout());
}

WorkHandle HostStagedProcessGroup::all_reduce(Tensor tensor, ReduceOp op) {
  Tensor h = on_host(tensor);
  return std::make_shared<StagedWork>(host_->all_reduce(h, op), h, tensor);
}

WorkHandle HostStagedProcessGroup::reduce_scatter(Tensor output, Tensor input, ReduceOp op) {
  Tensor out = output.device().is_cpu() ? output : Tensor::empty(output.shape(), output.dtype());
  return std::make_shared<StagedWork>(host_->reduce_scatter(out, on_host(input), op), out, output);
}

WorkHandle HostStagedProcessGroup::all_gather(Tensor output, Tensor input) {
  Tensor out = output.device().is_cpu() ? output : Tensor::empty(output.shape(), output.dtype());
  return std::make_shared<StagedWork>(host_->all_gather(out, on_host(input)), out, output);
}

WorkHandle HostStagedProcessGroup::broadcast(Tensor tensor, int root) {
  Tensor h = on_host(tensor);
  return std::make_shared<StagedWork>(host_->broadcast(h, root), h, tensor);
}

WorkHandle HostStagedProcessGroup::barrier() { return host_->barrier(); }

std::shared_ptr<ProcessGroup> HostStagedProcessGroup::new_group(const std::vector<int>& ranks, const std::string& name) {
  std::shared_ptr<ProcessGroup> sub = host_->new_group(ranks, name);
  return sub == nullptr ? nullptr : std::make_shared<HostStagedProcessGroup>(std::move(sub));
}

std::shared_ptr<ProcessGroup> for_device(std::shared_ptr<ProcessGroup> group, Device device) {
  if (device.is_cpu()) return group;
  return std::make_shared<HostStagedProcessGroup>(std::move(group));
}

}  // namespace shardlab::dist
