// The ZeRO paper's per-rank model-state memory and per-step communication for DDP, ZeRO-1, ZeRO-2
// and ZeRO-3 (Rajbhandari et al. 2020, sections 3 and 7), next to which the engine's measured figures
// are printed and tested.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "distributed/sharding_plan.h"

namespace shardlab::dist {

// Optimizer state the paper calls K bytes per parameter, as the optimizers here store it.
enum class OptimizerStateKind { adamw, adamw_8bit, sgd, sgd_momentum };
// K: AdamW 8 (m, v in f32), 8-bit AdamW 2 + 8/256 (u8 m, v and one f32 absmax each per block of
// 256), SGD 0, SGD with momentum 4; plus 4 when 16-bit parameters have fp32 master weights.
// (bf16 + AdamW: K = 12, the paper's mixed-precision Adam.)
double optimizer_bytes_per_param(OptimizerStateKind kind, bool master_weights);

// Per-rank model-state bytes by kind (parameter, gradient, optimizer_state: MemTag's rows).
struct ModelStateBytes {
  double parameters = 0;
  double gradients = 0;
  double optimizer_state = 0;
  double total() const { return parameters + gradients + optimizer_state; }
};

// The paper's figures for psi trained parameters over world_size ranks (hybrid: the shard group's
// size): parameters are replicated (psi * param bytes) or 1/N (ZeRO-3); gradients are replicated (DDP, ZeRO-1) or 1/N (ZeRO-2), in the
// reduce dtype; optimizer state (K bytes, masters included) is replicated (DDP) or 1/N.
//   bf16 params, bf16 grads, AdamW + masters (K = 12): 16 psi, 4 psi + 12 psi/N, 2 psi + 14 psi/N, 16 psi/N.
//   f32 params and grads, AdamW (K = 8):               16 psi, 8 psi + 8 psi/N,  4 psi + 12 psi/N, 16 psi/N.
ModelStateBytes zero_model_state_theory(Preset preset, int64_t psi, int world_size, DType param_dtype,
                                        DType reduce_dtype, double optimizer_bytes_per_param);

// The paper's per-step traffic in elements per rank: 2 psi for DDP (all-reduce = reduce-scatter +
// all-gather), ZeRO-1 and ZeRO-2 (reduce-scatter psi + all-gather psi); 3 psi for ZeRO-3 (all-gather
// in forward and again in backward, reduce-scatter). A ring implementation
// sends (N-1)/N of that: the figure the communication ledger's wire bytes are compared with.
double zero_step_traffic_elements(Preset preset, int64_t psi);
double ring_wire_elements(double traffic_elements, int world_size);

// "parameters  measured MiB  theory MiB" rows plus a total, for the CLI and tests' logs.
std::string model_state_table(const ModelStateBytes& measured, const ModelStateBytes& theory);

}  // namespace shardlab::dist
