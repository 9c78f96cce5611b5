// GatherableBuffer: an anonymous mapping committed and released in place (see param_shard.h).
#include "distributed/param_shard.h"

#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"
#include "core/memory_ledger.h"
#include "core/storage.h"

namespace shardlab::dist {

GatherableBuffer::GatherableBuffer(int64_t numel, DType dtype, Device device) {
  SL_CHECK(numel > 0, "sharded parameters: an empty unit buffer");
  const size_t bytes = static_cast<size_t>(dtype_bytes(dtype, numel));
  std::shared_ptr<Storage> storage;
  void* data = nullptr;
  if (device.is_cpu()) {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    mapped_bytes_ = (bytes + page - 1) / page * page;
    data = ::mmap(nullptr, mapped_bytes_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    SL_CHECK(data != MAP_FAILED, "sharded parameters: mmap of ", mapped_bytes_, " bytes failed");
    // The storage owns the mapping: parameters and saved tensors may outlive this object.
    storage = std::make_shared<Storage>(data, bytes, device, [n = mapped_bytes_](void* p) { ::munmap(p, n); });
  } else {
    // Owned by the device's allocator (and counted by the storage itself); starts released.
    storage = std::make_shared<Storage>(bytes, device, MemTag::communication, allocator_for(device.type));
    storage->release_bytes();
  }
  auto view_of = [&](std::shared_ptr<Storage> s) {
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = std::move(s);
    impl->shape = {numel};
    impl->strides = {1};
    impl->dtype = dtype;
    return Tensor(std::move(impl));
  };
  tensor_ = view_of(std::move(storage));
  gather_target_ = view_of(std::make_shared<Storage>(data, bytes, device, nullptr));
}

GatherableBuffer::~GatherableBuffer() {
  // A device storage counts itself (and frees its bytes when the last tensor viewing it goes).
  if (committed_ && on_cpu()) MemoryLedger::instance().on_free(tensor_.device(), MemTag::communication, tensor_.nbytes());
}

void GatherableBuffer::commit() {
  if (committed_) return;
  if (!on_cpu()) {
    tensor_.storage()->acquire_bytes();
    gather_target_.storage()->rebind(tensor_.storage()->data());
    committed_ = true;
    return;
  }
  SL_CHECK(::mprotect(tensor_.storage()->data(), mapped_bytes_, PROT_READ | PROT_WRITE) == 0,
           "sharded parameters: mprotect (commit) failed");
  committed_ = true;
  MemoryLedger::instance().on_alloc(tensor_.device(), MemTag::communication, tensor_.nbytes());
}

void GatherableBuffer::release() {
  if (!committed_) return;
  if (!on_cpu()) {
    // The caller has finished every collective on the buffer (the engine waits before freeing);
    // the caching allocator orders reuse after the work queued on its stream.
    tensor_.storage()->release_bytes();
    gather_target_.storage()->rebind(nullptr);
    committed_ = false;
    return;
  }
  void* data = tensor_.storage()->data();
  SL_CHECK(::madvise(data, mapped_bytes_, MADV_DONTNEED) == 0 && ::mprotect(data, mapped_bytes_, PROT_NONE) == 0,
           "sharded parameters: releasing a unit buffer failed");
  committed_ = false;
  // No version bump: tensors autograd saved from it are valid again once the unit is re-gathered
  // (the same values), which backward does before they are read.
  MemoryLedger::instance().on_free(tensor_.device(), MemTag::communication, tensor_.nbytes());
}

}  // namespace shardlab::dist
