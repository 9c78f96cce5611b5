// cuda::initialize(): one DeviceKernels table filled by every kernel family, and the caching
// allocator installed for Device::cuda storage.
#include "cuda/backend.h"

#include "core/storage.h"
#include "cuda/caching_allocator.h"
#include "cuda/device.h"
#include "cuda/kernel_registry.h"

namespace shardlab::cuda {

namespace {
DeviceKernels build_table() {
  DeviceKernels k;
  k.backend_name = "CUDA";
  register_copy_kernels(k);
  register_elementwise_kernels(k);
  register_reduce_kernels(k);
  register_loss_lookup_kernels(k);
  register_llama_fused_kernels(k);
  register_optimizer_kernels(k);
  register_nf4_kernels(k);
  register_matmul_kernels(k);
  register_attention_kernels(k);
  return k;
}

const DeviceKernels& table() {
  static const DeviceKernels kernels = build_table();
  return kernels;
}

bool g_initialized = false;
}  // namespace

bool initialize() {
  if (g_initialized) return true;
  if (device_count() == 0) return false;
  set_allocator(DeviceType::cuda, &device_caching_allocator());
  shardlab::set_pinned_host_allocator(&cuda::pinned_host_allocator());  // offloaded state (Tensor::empty_pinned)
  register_device_kernels(DeviceType::cuda, &table());
  g_initialized = true;
  return true;
}

bool initialized() { return g_initialized; }

std::vector<std::string> ops_without_cuda_kernel() { return missing_device_kernels(table()); }

}  // namespace shardlab::cuda
