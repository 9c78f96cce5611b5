// The parity harness: trains a tiny Llama with a data-parallel preset on the ranks of a group and,
// in every rank, a plain single-process reference (no engine) on the same global batch, and
// compares the loss and every parameter, by name, after every step.
//
// NOTE [parity data layout]: the data is the DataLoader's global batch convention
// (models/data_loader.h): rank r of W takes rows [r*B, (r+1)*B) of each global micro batch of W*B
// rows, and the reference is one process with micro_batch_size W*B, so the union over ranks is
// exactly the reference's batch. Rows have different lengths, so each rank has a different number
// of target tokens: only a loss normalised by the GLOBAL token count can match.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "distributed/process_group.h"
#include "distributed/sharding_plan.h"

namespace shardlab::parity {

// NOTE [parity tolerance]: everything is f32 and both runs start from the same parameters and see
// the same rows; only the order of additions differs (W per-rank partial gradient sums added by
// the collective vs one GEMM over W*B rows; the clipping norm from per-shard sums of squares), ~1e-7
// relative per gradient element. AdamW divides by sqrt(v) + eps, which turns that into a larger
// change of an update where a gradient entry is near zero, so parameters get the widest bound.
// Measured over the whole matrix at 1, 2 and 4 ranks (lr 1e-3, 4 steps): loss <= 4.2e-7, relative
// grad norm <= 2.6e-8, parameters <= 7.6e-6 (1 rank: bit-identical). The bounds below leave a
// margin of 6x or more, and stay far below what a real bug does: one step moves parameters by
// ~lr = 1e-3 (4e-3 over the run), and a lost rank, wrong shard or skipped bucket changes the loss
// by ~1e-4 and the gradient norm by more than 1e-5.
inline constexpr double kParameterTolerance = 5e-5;  // max abs difference of any parameter element
inline constexpr double kLossTolerance = 1e-5;       // abs difference of a step's loss (loss ~ 5.5)
// The gradient norm before clipping, |a - b| / max(1, b): AdamW and clipping hide a gradient scaled
// by a constant (an average where a sum belongs), the norm does not.
inline constexpr double kGradNormTolerance = 1e-6;

// Test-only fault: after step `step`'s update, add `delta` to every element of parameter `tensor`
// on rank `rank` (of the group), as a bug in the engine would.
struct Injection {
  int64_t step = 1;
  std::string tensor;
  int rank = 0;
  float delta = 1e-3f;
};

struct ParityCase {
  dist::Preset preset = dist::Preset::ddp;
  bool lora = false;                    // LoRA r=4 on q/v projections: only adapters are trained
  int64_t gradient_accumulation_steps = 1;
  int64_t steps = 4;
  int64_t micro_batch_size = 2;         // rows per rank per micro batch
  bool checkpointing = false;           // gradient checkpointing per decoder layer (both runs)
  // zero3 / hybrid_shard only:
  int hybrid_shard_group_size = 0;
  dist::WrapPolicy wrap = dist::WrapPolicy::decoder_layer;
  int64_t prefetch_bucket_size = 50000000;
  int64_t param_persistence_threshold = 0;
  std::optional<Injection> inject;
  // Where the engine run's model lives (the reference stays on the CPU). A device run uses the
  // group through dist::for_device (host-staged collectives).
  Device device = Device::cpu();
  bool offload_optimizer = false;  // with a device: masters and optimizer state on the CPU
  bool offload_param = false;      // zero3/hybrid with a device: parameter and gradient shards on the CPU too
};

// The first place where the run left the reference: the earliest step, and in it the loss (checked
// first: it is computed before the step's update), the gradient norm, or the first parameter in
// registration order.
struct Divergence {
  int64_t step = 0;
  std::string tensor;  // a parameter name, "loss" or "grad_norm"
  int rank = 0;
  double max_abs_diff = 0.0;
  double tolerance = 0.0;
  // "first divergence at step S, tensor NAME: max abs diff D (tolerance T) on rank R"
  std::string message() const;
};

struct ParityReport {
  std::optional<Divergence> first;  // the same on every rank (agreed through the group)
  std::vector<double> losses;       // the engine run's loss per step
  std::vector<double> reference_losses;
  double max_loss_diff = 0.0;       // over steps and ranks
  double max_grad_norm_diff = 0.0;  // relative, over steps and ranks
  // Where the run kept its state: the model's parameters on the case's device, the optimizer's
  // stepped tensors and state (step counter aside) on the host exactly when offloaded, and the
  // sharded units' parameter and gradient shards on the host exactly with offload_param, and what
  // is offloaded (shards, fp32 masters) in pinned host memory (this rank).
  bool state_where_expected = false;
  double max_param_diff = 0.0;      // over steps, parameters, elements and ranks
  double max_param_change = 0.0;    // the reference's largest parameter change: it trained
  int64_t trained_parameters = 0;   // elements the optimizer steps
  int units = 0;                    // buckets, or sharded units (zero3, hybrid_shard)
  std::string describe() const;     // one line: case figures for the test log
};

// Collective over `group`: every rank calls it with the same case.
ParityReport run_parity(dist::ProcessGroup& group, const ParityCase& c);

std::string case_name(const ParityCase& c);  // "zero2/lora/accum2"

}  // namespace shardlab::parity
