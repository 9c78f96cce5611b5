// Device dispatch for the op API: a table of kernels per non-CPU device type, registered by its
// backend (the CUDA backend, or a test backend), and the one-line forward every op entry point does.
#pragma once

#include <string>
#include <type_traits>
#include <vector>

#include "core/async_copy.h"
#include "core/ops.h"
#include "core/ops/nf4.h"
#include "core/tensor.h"

namespace shardlab {

// One slot per row of core/device_kernels.def; a null slot is an op the backend does not have yet.
struct DeviceKernels {
  const char* backend_name = "unnamed";
#define SL_KERNEL(name, type) std::add_pointer_t<type> name = nullptr;
#include "core/device_kernels.def"
#undef SL_KERNEL
};

// Installs (or with nullptr removes) the kernels for a non-CPU device type; returns the previous
// table. Not thread-safe: call at start-up, before tensors of that type exist.
const DeviceKernels* register_device_kernels(DeviceType type, const DeviceKernels* kernels);
const DeviceKernels* registered_device_kernels(DeviceType type);

// The names of the .def rows whose slot is null in `kernels` (what a backend still lacks).
std::vector<std::string> missing_device_kernels(const DeviceKernels& kernels);

namespace detail {
[[noreturn]] void throw_no_backend(const char* op, Device device);
[[noreturn]] void throw_no_kernel(const char* op, Device device, const char* backend);

template <typename Fn>
Fn* device_kernel(Device device, Fn* DeviceKernels::*slot, const char* op) {
  const DeviceKernels* table = registered_device_kernels(device.type);
  if (table == nullptr) throw_no_backend(op, device);
  Fn* fn = table->*slot;
  if (fn == nullptr) throw_no_kernel(op, device, table->backend_name);
  return fn;
}
}  // namespace detail

}  // namespace shardlab

// The first line of an op entry point: when `device_expr` is not the CPU, the call goes to that
// device's kernel of the same name, with the same arguments, and the CPU code below never runs.
// A backend's kernel checks that every other tensor argument is on its device.
#define SL_FORWARD_TO_DEVICE(op, device_expr, ...)                                                      \
  do {                                                                                                   \
    const ::shardlab::Device sl_device_ = (device_expr);                                               \
    if (!sl_device_.is_cpu())                                                                            \
      return ::shardlab::detail::device_kernel(sl_device_, &::shardlab::DeviceKernels::op, #op)(__VA_ARGS__); \
  } while (0)
