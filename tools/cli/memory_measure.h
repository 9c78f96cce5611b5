// `shardlab memory`: what one real training step (forward, backward, optimizer step) of a model
// holds per memory-ledger tag, measured for each precision/checkpointing/optimizer variant.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/memory_ledger.h"
#include "models/llama_config.h"
#include "tools/estimator/memory_estimate.h"

namespace shardlab::cli {

// What is trained: every parameter, LoRA adapters on a frozen base, or LoRA on a 4-bit NF4 base.
enum class TrainedPart { full, lora, qlora };

struct MemoryVariant {
  bool bf16 = false;                    // bf16 parameters + fp32 master weights (else plain f32)
  bool gradient_checkpointing = false;  // recompute each decoder layer in backward
  bool adamw_8bit = false;              // 8-bit AdamW (else 32-bit AdamW)
  // lora/qlora: r = 8, alpha = 16 on every decoder projection (q, k, v, o, gate, up, down);
  // qlora quantizes those projections to NF4 first (compute in the parameter dtype).
  TrainedPart trained = TrainedPart::full;
  std::string name() const;             // e.g. "bf16+masters ckpt adamw8bit lora"
};

// Bytes relative to the live bytes before the variant was built (CPU device).
struct MemoryMeasurement {
  MemoryVariant variant;
  int64_t num_parameters = 0;                   // P: trainable parameters
  std::array<int64_t, kNumMemTags> live{};      // per tag, after the step
  std::array<int64_t, kNumMemTags> peak{};      // per tag, highest during the step
  int64_t total_live = 0;
  int64_t total_peak = 0;                       // peak of the sum during the step
  int64_t live_of(MemTag t) const { return live[static_cast<int>(t)]; }
  int64_t peak_of(MemTag t) const { return peak[static_cast<int>(t)]; }
};

struct MemoryRunOptions {
  int64_t micro_batch_size = 1;
  int64_t sequence_len = 16;
  uint64_t seed = 0;
};

// Builds the model (random weights) with the variant's precision, checkpointing and optimizer,
// runs one trainer step on a (micro_batch_size, sequence_len) batch of random token ids and
// returns the ledger's deltas; everything it built is freed before it returns. Peaks cover only
// the step (they are reset after building), measured from the baseline before building.
MemoryMeasurement measure_training_step(const models::LlamaConfig& config, const MemoryVariant& variant,
                                        const MemoryRunOptions& options);

// The 8 variants: {f32, bf16+masters} x {no checkpointing, checkpointing} x {AdamW, AdamW8bit}.
std::vector<MemoryVariant> all_memory_variants();
// Full fine-tuning vs LoRA vs QLoRA, each in f32 and in bf16+masters (AdamW, no checkpointing).
std::vector<MemoryVariant> adapter_memory_variants();

// The estimator's setup for a measured variant (one rank, the same batch), so that estimate and
// measurement can be compared tag by tag.
estimate::EstimateSetup estimate_setup_of(const models::LlamaConfig& config, const MemoryVariant& variant,
                                          const MemoryRunOptions& options);
// Relative error (estimate - measured) / measured of the peak of one tag; 0 when both are 0.
double estimate_error(const estimate::MemoryEstimate& estimate, const MemoryMeasurement& measured, MemTag tag);
// Per variant: estimated and measured peaks of parameter, gradient, optimizer_state, activation
// (MiB) and the relative error of each.
std::string estimate_vs_measured_table(const models::LlamaConfig& config, const std::vector<MemoryMeasurement>& rows,
                                       const MemoryRunOptions& options);

// The report: one row per measurement (MiB, 3 decimals, live/peak per tag and total peak),
// then bytes per parameter for parameter, gradient and optimizer_state.
std::string memory_table(const std::vector<MemoryMeasurement>& rows);

}  // namespace shardlab::cli
