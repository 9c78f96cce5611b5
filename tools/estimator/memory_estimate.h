// The per-rank memory estimator: bytes per memory-ledger tag (and a CPU column for offload) for a
// Llama shape, a training recipe and a sharding preset, without running the model.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "core/memory_ledger.h"
#include "tools/estimator/activation_estimate.h"
#include "tools/estimator/estimate_setup.h"

namespace shardlab::estimate {

// Parameter counts of the model under the setup's adapter.
struct ParameterCounts {
  double total = 0;          // every parameter of the base model
  double projections = 0;    // decoder projection weights (what QLoRA stores in NF4)
  double trained = 0;        // psi: what the optimizer steps (LoRA: the adapters)
  double largest_layer = 0;  // trained elements of one decoder layer (a zero3 unit)
  double largest_tensor = 0; // elements of the largest trained tensor
  double root_unit = 0;      // trained elements outside the decoder layers (embeddings, norm, lm_head)
};
ParameterCounts count_parameters(const EstimateSetup& setup);

// NF4 bytes per quantized weight: 4 bits + one 8-bit absmax code per block of 64 + one f32 per
// 256 blocks (models/llama_quantize.h): 0.5 + 1/64 + 1/4096.
inline constexpr double kNf4BytesPerParam = 0.5 + 1.0 / 64 + 4.0 / (64 * 256);

struct MemoryEstimate {
  EstimateSetup setup;
  ParameterCounts counts;
  std::array<double, kNumMemTags> device{};  // per-rank peak per tag on the accelerator
  double cpu = 0;                            // offloaded bytes per rank (host memory)
  ActivationEstimate activations;
  std::vector<Term> terms;                   // model-state and communication terms
  double of(MemTag t) const { return device[static_cast<int>(t)]; }
  double device_total() const;               // sum of the per-tag peaks (an upper bound of the total peak)
};

// Errors name the culprit: offload_params without parameter sharding, a bad hybrid group, r < 1.
MemoryEstimate estimate_memory(const EstimateSetup& setup);

// One row per estimate (GiB or MiB per tag, cpu, total); `verbose` appends every term's formula.
std::string estimate_table(const std::vector<MemoryEstimate>& rows, bool verbose);

}  // namespace shardlab::estimate
