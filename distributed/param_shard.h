// A sharded unit's gathered (full) flat parameter buffer whose memory is committed for use and
// released after it, while the same Storage stays bound to the model's parameters and to the
// tensors autograd saved for backward (FSDP resizes the storage to zero for the same reason: a
// freed buffer must not live on in saved tensors, and a re-gather must reach them).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace shardlab::dist {

// On the CPU the buffer is an anonymous mapping; release() drops its pages and makes it
// inaccessible (a use of a freed parameter faults at once instead of reading stale values),
// commit() makes it readable and writable again (zero pages until written). On a device it is a
// storage of the device's allocator released and re-acquired in place (Storage::release_bytes:
// the caching allocator takes the bytes back, the tensors keep their storage object, and the
// gather target is rebound to the new address). Committed bytes are counted in the memory ledger
// under MemTag::communication: gathered parameters are transient.
class GatherableBuffer {
 public:
  GatherableBuffer(int64_t numel, DType dtype, Device device);  // starts released
  ~GatherableBuffer();
  GatherableBuffer(const GatherableBuffer&) = delete;
  GatherableBuffer& operator=(const GatherableBuffer&) = delete;

  // (numel,) over the mapping; valid to read or write only while committed.
  const Tensor& tensor() const { return tensor_; }
  // The same memory through a second storage object: what collectives write into. A gather puts
  // back the values autograd saved from tensor(), so it must not bump tensor()'s version counter
  // (which would fail the saved tensors' in-place check in the backward after a re-gather).
  const Tensor& gather_target() const { return gather_target_; }
  void commit();
  void release();
  bool committed() const { return committed_; }
  int64_t nbytes() const { return tensor_.nbytes(); }

 private:
  bool on_cpu() const { return mapped_bytes_ > 0; }
  Tensor tensor_;
  Tensor gather_target_;
  size_t mapped_bytes_ = 0;  // CPU: the mapping's size; 0 on a device (allocator-owned storage)
  bool committed_ = false;
};

}  // namespace shardlab::dist
