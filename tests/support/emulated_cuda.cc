// The emulated CUDA backend: one generic wrapper per op slot that re-labels "cuda" tensors as CPU
// views of the same bytes, calls the CPU entry point, and copies results into fresh "cuda"
// tensors (so their bytes are counted in the ledger under the device, as on a GPU).
#include "tests/support/emulated_cuda.h"

#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "core/device_kernels.h"
#include "core/ops.h"
#include "core/ops/nf4.h"
#include "core/storage.h"

namespace shardlab::testing {

namespace {

// Host memory under another name: standing in for device memory (the CPU allocator's own rules,
// another device label), and for the CUDA backend's pinned host allocator (so tests can tell that
// offloaded state asked for pinned memory).
class HostMemoryAllocator final : public Allocator {
 public:
  explicit HostMemoryAllocator(const char* name) : name_(name) {}
  void* allocate(size_t bytes, Device device) override { return allocator_for(DeviceType::cpu)->allocate(bytes, device); }
  void deallocate(void* ptr, size_t bytes, Device device) override {
    allocator_for(DeviceType::cpu)->deallocate(ptr, bytes, device);
  }
  const char* name() const override { return name_; }

 private:
  const char* name_;
};

// A CPU-labelled view of an emulated device tensor's bytes (same layout; keeps the storage alive).
Tensor host_view(const Tensor& t) {
  if (!t.defined() || t.device().is_cpu()) return t;
  const std::shared_ptr<Storage>& storage = t.storage();
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(storage->data(), storage->nbytes(), Device::cpu(),
                                            [keep = storage](void*) {});
  impl->shape = t.shape();
  impl->strides = t.strides();
  impl->offset = t.offset();
  impl->dtype = t.dtype();
  return Tensor(std::move(impl));
}

// A fresh device tensor holding a CPU result's values (contiguous, allocated on `device`).
Tensor on_device(const Tensor& t, Device device) {
  if (!t.defined() || !t.device().is_cpu()) return t;
  const Tensor src = ops::contiguous(t);
  Tensor dst = Tensor::empty(src.shape(), src.dtype(), device);
  if (src.nbytes() > 0) std::memcpy(dst.raw_data(), src.raw_data(), static_cast<size_t>(src.nbytes()));
  return dst;
}

// Arguments in: tensors (also inside option structs) become host views; everything else as is.
template <typename T>
decltype(auto) to_host(T&& x) {
  using U = std::remove_cvref_t<T>;
  if constexpr (std::is_same_v<U, Tensor>) {
    return host_view(x);
  } else if constexpr (std::is_same_v<U, std::vector<Tensor>>) {
    std::vector<Tensor> views;
    views.reserve(x.size());
    for (const Tensor& t : x) views.push_back(host_view(t));
    return views;
  } else if constexpr (std::is_same_v<U, ops::AttentionOptions>) {
    ops::AttentionOptions o = x;
    o.segment_ids = host_view(x.segment_ids);
    return o;
  } else if constexpr (std::is_same_v<U, Nf4Tensor>) {
    Nf4Tensor q = x;
    q.packed = host_view(x.packed);
    q.absmax_codes = host_view(x.absmax_codes);
    q.nested_absmax = host_view(x.nested_absmax);
    q.offset = host_view(x.offset);
    return q;
  } else {
    return std::forward<T>(x);
  }
}

// Results out: every tensor moves to `device`.
template <typename R>
R to_device(R r, Device device) {
  if constexpr (std::is_same_v<R, Tensor>) {
    return on_device(r, device);
  } else if constexpr (std::is_same_v<R, ops::MaxResult>) {
    return {on_device(r.values, device), on_device(r.indices, device)};
  } else if constexpr (std::is_same_v<R, ops::RmsNormOut>) {
    return {on_device(r.y, device), on_device(r.rstd, device)};
  } else if constexpr (std::is_same_v<R, ops::RmsNormGrads>) {
    return {on_device(r.dx, device), on_device(r.dweight, device)};
  } else if constexpr (std::is_same_v<R, ops::SwigluGrads>) {
    return {on_device(r.dgate, device), on_device(r.dup, device)};
  } else if constexpr (std::is_same_v<R, ops::AttentionOut>) {
    return {on_device(r.out, device), on_device(r.lse, device)};
  } else if constexpr (std::is_same_v<R, ops::AttentionGrads>) {
    return {on_device(r.dq, device), on_device(r.dk, device), on_device(r.dv, device)};
  } else if constexpr (std::is_same_v<R, ops::CrossEntropyOut>) {
    return {on_device(r.loss, device), on_device(r.lse, device), r.count};
  } else if constexpr (std::is_same_v<R, Nf4Tensor>) {
    Nf4Tensor q = r;
    q.packed = on_device(r.packed, device);
    q.absmax_codes = on_device(r.absmax_codes, device);
    q.nested_absmax = on_device(r.nested_absmax, device);
    q.offset = on_device(r.offset, device);
    return q;
  } else if constexpr (std::is_same_v<R, PendingCopyHandle>) {
    return r;
  } else {
    static_assert(std::is_arithmetic_v<R>, "emulated_cuda: a slot returns a type with no device conversion");
    return r;
  }
}

// The device of the first tensor argument (the one SL_FORWARD_TO_DEVICE dispatched on).
template <typename T>
void find_device(Device& d, bool& found, const T& x) {
  if (found) return;
  if constexpr (std::is_same_v<std::remove_cvref_t<T>, Tensor>) {
    if (x.defined()) d = x.device(), found = true;
  } else if constexpr (std::is_same_v<std::remove_cvref_t<T>, Nf4Tensor>) {
    if (x.packed.defined()) d = x.packed.device(), found = true;
  } else if constexpr (std::is_same_v<std::remove_cvref_t<T>, std::vector<Tensor>>) {
    if (!x.empty()) find_device(d, found, x.front());  // the list op's dispatch tensor
  }
}

// dst and src contiguous, same shape and dtype, one of them on the CPU: both are host memory.
// (Named as its slot so that the table below picks it up like every ops:: entry point.)
void copy_between_devices(const Tensor& dst, const Tensor& src) {
  if (src.nbytes() > 0) std::memcpy(dst.raw_data(), src.raw_data(), static_cast<size_t>(src.nbytes()));
}

// The asynchronous copy, deferred: the bytes move only in wait(), so a caller that reads the
// destination (or reuses the source) before waiting gets stale data here, as it could on a GPU.
// An unwaited copy never happens: dropping a handle without wait() is a bug the tests should see.
class DeferredCopy final : public PendingCopy {
 public:
  DeferredCopy(Tensor dst, Tensor src) : dst_(std::move(dst)), src_(std::move(src)) {}
  void wait() override {
    if (done_) return;
    copy_between_devices(dst_, src_);
    done_ = true;
  }

 private:
  Tensor dst_, src_;
  bool done_ = false;
};

PendingCopyHandle copy_between_devices_async(const Tensor& dst, const Tensor& src) {
  return std::make_shared<DeferredCopy>(dst, src);
}

// A real GPU kernel cannot read a CPU tensor: every tensor argument must be on the first one's
// device, or the call fails as the CUDA backend's checks make it fail.
template <typename T>
void check_on(Device d, const char* op, const T& x) {
  if constexpr (std::is_same_v<std::remove_cvref_t<T>, Tensor>) {
    if (x.defined() && x.device() != d)
      SL_FAIL(op, ": a tensor on ", x.device().str(), " was passed with tensors on ", d.str(),
              " (emulated CUDA backend: move it to the device first)");
  } else if constexpr (std::is_same_v<std::remove_cvref_t<T>, ops::AttentionOptions>) {
    check_on(d, op, x.segment_ids);
  } else if constexpr (std::is_same_v<std::remove_cvref_t<T>, std::vector<Tensor>>) {
    for (size_t i = 0; i < x.size(); ++i)
      if (x[i].defined() && x[i].device() != d)
        SL_FAIL(op, " (tensor ", i, "): a tensor on ", x[i].device().str(), " was passed with tensors on ", d.str(),
                " (emulated CUDA backend: move it to the device first)");
  }
}

// A slot's name as a template argument, for error messages.
template <size_t N>
struct SlotName {
  char text[N];
  constexpr SlotName(const char (&s)[N]) {
    for (size_t i = 0; i < N; ++i) text[i] = s[i];
  }
};

template <auto CpuFn, typename Signature, SlotName Name>
struct Emulated;
template <auto CpuFn, typename R, typename... Args, SlotName Name>
struct Emulated<CpuFn, R(Args...), Name> {
  static R call(Args... args) {
    Device device = Device::cuda(0);
    bool found = false;
    (find_device(device, found, args), ...);
    // copy_between_devices moves data across the boundary on purpose; every other op stays on one device.
    bool crosses_devices = false;
    if constexpr (std::is_same_v<decltype(CpuFn), void (*)(const Tensor&, const Tensor&)>)
      crosses_devices = CpuFn == &copy_between_devices;
    if constexpr (std::is_same_v<decltype(CpuFn), PendingCopyHandle (*)(const Tensor&, const Tensor&)>)
      crosses_devices = CpuFn == &copy_between_devices_async;
    if (!crosses_devices) (check_on(device, Name.text, args), ...);
    if constexpr (std::is_void_v<R>) {
      CpuFn(to_host(args)...);
    } else {
      return to_device<R>(CpuFn(to_host(args)...), device);
    }
  }
};

DeviceKernels build_table() {
  DeviceKernels k;
  k.backend_name = "emulated CUDA";
  using namespace ops;
#define SL_KERNEL(name, type) \
  k.name = &Emulated<static_cast<std::add_pointer_t<type>>(&name), type, SlotName(#name)>::call;
#include "core/device_kernels.def"
#undef SL_KERNEL
  return k;
}

HostMemoryAllocator g_allocator("emulated-cuda");
Allocator* g_previous_allocator = nullptr;
Allocator* g_previous_pinned = nullptr;
bool g_installed = false;

}  // namespace

void use_emulated_cuda() {
  if (g_installed) return;
  static const DeviceKernels table = build_table();
  g_previous_allocator = set_allocator(DeviceType::cuda, &g_allocator);
  static HostMemoryAllocator pinned("emulated-cuda-pinned-host");
  g_previous_pinned = set_pinned_host_allocator(&pinned);
  register_device_kernels(DeviceType::cuda, &table);
  g_installed = true;
}

void remove_emulated_cuda() {
  if (!g_installed) return;
  set_allocator(DeviceType::cuda, g_previous_allocator);
  set_pinned_host_allocator(g_previous_pinned);
  register_device_kernels(DeviceType::cuda, nullptr);
  g_installed = false;
}

}  // namespace shardlab::testing
