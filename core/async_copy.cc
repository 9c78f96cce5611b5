// copy_async: the argument checks, then the device backend's copy_between_devices_async slot.
#include "core/async_copy.h"

#include "core/device_kernels.h"
#include "core/trace.h"

namespace shardlab {

namespace {
// The backend's copy, with the time the host spends waiting for it as a span of its own: what the
// overlap did not hide.
class TracedCopy final : public PendingCopy {
 public:
  TracedCopy(PendingCopyHandle inner, std::string args) : inner_(std::move(inner)), args_(std::move(args)) {}
  void wait() override {
    if (!trace::enabled()) return inner_->wait();
    const int64_t start = trace::now_ns();
    inner_->wait();
    trace::record_span("wait for async copy", trace::Category::copy, start, args_);
  }

 private:
  PendingCopyHandle inner_;
  std::string args_;
};
}  // namespace

PendingCopyHandle copy_async(const Tensor& dst, const Tensor& src) {
  SL_CHECK(dst.defined() && src.defined(), "copy_async: undefined tensor");
  SL_CHECK(dst.device().is_cpu() != src.device().is_cpu(), "copy_async: exactly one side must be on the CPU, got ",
           src.device().str(), " -> ", dst.device().str());
  SL_CHECK(dst.dtype() == src.dtype(), "copy_async: dtype mismatch: ", dtype_name(src.dtype()), " -> ",
           dtype_name(dst.dtype()));
  SL_CHECK(dst.shape() == src.shape(), "copy_async: shape mismatch: ", shape_str(src.shape()), " -> ",
           shape_str(dst.shape()));
  SL_CHECK(dst.is_contiguous() && src.is_contiguous(), "copy_async: both tensors must be contiguous (shape ",
           shape_str(dst.shape()), ")");
  const Device side = dst.device().is_cpu() ? src.device() : dst.device();
  dst.bump_version();
  const char* name = dst.device().is_cpu() ? "async copy to host" : "async copy to device";
  const auto args = [&] { return trace::Args().add("bytes", dst.nbytes()).add("device", side.str()).json(); };
  const trace::Scope span(name, trace::Category::copy, args);  // the issue; its wait is traced below
  PendingCopyHandle copy = detail::device_kernel(side, &DeviceKernels::copy_between_devices_async, "copy_async")(dst, src);
  // Untraced runs get the backend's handle as it is: no wrapper allocated per copy.
  return trace::enabled() ? std::make_shared<TracedCopy>(std::move(copy), args()) : copy;
}

}  // namespace shardlab
