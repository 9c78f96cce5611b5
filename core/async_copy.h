// Host<->device copies that run while the host goes on: what offload overlaps with compute
// (gradients copied down during backward, parameters copied up ahead of their use).
#pragma once

#include <memory>

#include "core/tensor.h"

namespace shardlab {

// A copy in flight. wait() blocks until the bytes have arrived; work issued after it, on the host
// or on the device, sees them. Destroying an unwaited copy waits for it (never frees memory a copy
// engine still reads or writes).
class PendingCopy {
 public:
  virtual ~PendingCopy() = default;
  virtual void wait() = 0;
};
using PendingCopyHandle = std::shared_ptr<PendingCopy>;

// dst and src: the same shape and dtype, both contiguous, exactly one on the CPU. A backend with a
// copy engine (CUDA: the copy stream, after the work already queued on the compute stream) returns
// at once; the host side should be pinned (Tensor::empty_pinned), or the driver stages it
// synchronously. Neither tensor may be written (nor dst read) before wait(). Errors name the culprit.
PendingCopyHandle copy_async(const Tensor& dst, const Tensor& src);

}  // namespace shardlab
