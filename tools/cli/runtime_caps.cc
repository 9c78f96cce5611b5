// detect_runtime_caps(): the CUDA backend's view of GPU 0, or nothing in a CPU-only build.
#include "tools/cli/runtime_caps.h"

#include <algorithm>

#include "core/device_kernels.h"
#include "distributed/init.h"

#ifdef SHARDLAB_HAVE_CUDA
#include "cuda/backend.h"
#include "cuda/cublaslt_gemm.h"
#include "cuda/device.h"
#endif

namespace shardlab::cli {

config::RuntimeCaps detect_runtime_caps() {
  config::RuntimeCaps caps;
#ifdef SHARDLAB_HAVE_CUDA
  if (cuda::initialize()) {
    caps.cuda_available = true;
    // bf16 arithmetic and TF32 tensor cores arrived with Ampere (compute capability 8.0).
    const int cc = cuda::compute_capability(0);
    caps.bf16_supported = cc >= 80;
    caps.tf32_supported = cc >= 80;
  }
#endif
  // A CUDA-type backend the embedding program registered itself (tests/cli's emulated device):
  // treated as an Ampere-class GPU.
  if (!caps.cuda_available && registered_device_kernels(DeviceType::cuda) != nullptr) caps = {true, true, true};
  return caps;
}

Device training_device(const config::TrainConfig& cfg) {
  if (cfg.device != config::DeviceKind::cuda) return Device::cpu();
  int gpus = 1;
#ifdef SHARDLAB_HAVE_CUDA
  gpus = std::max(1, cuda::device_count());
#endif
  return Device::cuda(dist::local_rank_from_env() % gpus);
}

void apply_device_settings(const config::TrainConfig& cfg) {
#ifdef SHARDLAB_HAVE_CUDA
  if (cfg.device == config::DeviceKind::cuda) cuda::set_allow_tf32(cfg.tf32 == config::Toggle::on);
#else
  (void)cfg;
#endif
}

}  // namespace shardlab::cli
