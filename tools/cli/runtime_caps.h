// What this machine offers the config's `auto` settings: a GPU (and whether it does bf16/TF32),
// found by bringing the CUDA backend up when the build has one.
#pragma once

#include "core/device.h"
#include "tools/config/train_config.h"

namespace shardlab::cli {

// Initializes the CUDA backend when it is built and a GPU is visible; CPU-only otherwise.
config::RuntimeCaps detect_runtime_caps();
// The device this process trains on: the CPU, or for device cuda the GPU of its node-local rank
// (modulo the visible GPUs, so ranks share GPUs when there are more ranks than GPUs on a node).
Device training_device(const config::TrainConfig& cfg);
// Applies the resolved device switches to the backend: TF32 tensor cores for f32 matmuls (`tf32`).
void apply_device_settings(const config::TrainConfig& cfg);

}  // namespace shardlab::cli
