// The per-device-type kernel tables and the errors for a missing backend or kernel.
#include "core/device_kernels.h"

#include "core/error.h"

namespace shardlab {

namespace {
const DeviceKernels*& slot(DeviceType type) {
  static const DeviceKernels* tables[2] = {nullptr, nullptr};
  return tables[static_cast<int>(type)];
}
}  // namespace

const DeviceKernels* register_device_kernels(DeviceType type, const DeviceKernels* kernels) {
  SL_CHECK(type != DeviceType::cpu, "register_device_kernels: the CPU kernels are built in and cannot be replaced");
  const DeviceKernels* old = slot(type);
  slot(type) = kernels;
  return old;
}

const DeviceKernels* registered_device_kernels(DeviceType type) {
  return type == DeviceType::cpu ? nullptr : slot(type);
}

std::vector<std::string> missing_device_kernels(const DeviceKernels& kernels) {
  std::vector<std::string> missing;
#define SL_KERNEL(name, type) \
  if (kernels.name == nullptr) missing.emplace_back(#name);
#include "core/device_kernels.def"
#undef SL_KERNEL
  return missing;
}

namespace detail {
void throw_no_backend(const char* op, Device device) {
  SL_FAIL(op, ": got a tensor on ", device.str(), " but no ", device.type == DeviceType::cuda ? "CUDA" : "device",
          " backend is registered (a build without nvcc, or the program did not call cuda::initialize())");
}
void throw_no_kernel(const char* op, Device device, const char* backend) {
  SL_FAIL(op, ": the ", backend, " backend has no kernel for this op yet (tensor on ", device.str(),
          "); move the tensors to the CPU or add the kernel in cuda/");
}
}  // namespace detail

}  // namespace shardlab
