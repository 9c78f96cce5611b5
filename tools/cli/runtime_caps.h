// What this machine offers the config's `auto` settings: a GPU (and whether it does bf16/TF32),
// found by bringing the CUDA backend up when the build has one.
#pragma once

#include "tools/config/train_config.h"

namespace shardlab::cli {

// Initializes the CUDA backend when it is built and a GPU is visible; CPU-only otherwise.
config::RuntimeCaps detect_runtime_caps();
// Applies the resolved device switches to the backend: TF32 tensor cores for f32 matmuls (`tf32`).
void apply_device_settings(const config::TrainConfig& cfg);

}  // namespace shardlab::cli
