// A stand-in CUDA backend for CPU-only machines: Device::cuda tensors live in host memory and
// every op slot runs the CPU kernel on them. What it tests is the plumbing around devices (every
// op of a training step dispatches through the table, nothing reads device memory directly,
// tensors, modules and optimizer state move between devices) — not CUDA kernels, which
// tests/cuda/ compares with the CPU on a real GPU.
#pragma once

namespace shardlab::testing {

// Registers the emulated backend and a host-memory allocator for DeviceType::cuda (idempotent).
// Only for test programs that do not link the real CUDA backend.
void use_emulated_cuda();
// Removes them again (tests that check the "no backend" errors).
void remove_emulated_cuda();

}  // namespace shardlab::testing
