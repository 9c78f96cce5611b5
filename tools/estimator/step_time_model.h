// The scale-out step-time model: compute time from FLOPs and the cluster's achieved throughput,
// communication time of each collective from the alpha-beta model of a ring, and their overlap.
#pragma once

#include <string>
#include <vector>

#include "distributed/process_group.h"
#include "tools/estimator/cluster_config.h"
#include "tools/estimator/estimate_setup.h"

namespace shardlab::estimate {

// Ring collective over n ranks on one link, `bytes` = the payload (all-reduce: the tensor;
// reduce-scatter: the input; all-gather: the output):
//   all_reduce      2(n-1) alpha + 2(n-1)/n * bytes / beta
//   reduce_scatter   (n-1) alpha +  (n-1)/n * bytes / beta   (all_gather the same)
//   broadcast        (n-1) alpha +            bytes / beta   (pipelined ring)
double ring_seconds(dist::CollectiveKind kind, double bytes, int n, const Link& link);

// t = intercept + slope * x fitted to measured (x, t) by least squares on the relative error, i.e.
// weights 1/t^2, so every message size counts alike (used by `simulate --calibrate-comm`).
struct LinearFit {
  double intercept = 0;
  double slope = 0;
};
LinearFit fit_relative(const std::vector<double>& xs, const std::vector<double>& ts);

// The link a group of n consecutive ranks crosses: the intra-node one when it fits in a node.
const Link& link_for_group(const ClusterConfig& cluster, int n);

// Training FLOPs per token: 6 per weight-matmul parameter for full training (2 forward, 4 backward),
// 4 per frozen one (no weight gradient) + 6 per adapter parameter; attention per layer: QK^T and AV
// are 2*T*Hq*d FLOPs each, halved by the causal mask (2*T*Hq*d forward, x3 with backward); checkpointing
// adds one forward (2 per weight parameter + a third of the attention).
double flops_per_token(const EstimateSetup& setup);

struct CollectiveTime {
  std::string what;       // "gradient all-reduce", ...
  double seconds = 0;
  double overlappable = 0;  // how much of it may hide behind compute
};

struct StepPrediction {
  double tokens_per_rank = 0;
  double flops = 0;             // per rank per step
  double compute_seconds = 0;
  std::vector<CollectiveTime> collectives;
  double comm_seconds = 0;      // sum of the collectives
  double exposed_comm_seconds = 0;
  double step_seconds = 0;
  std::string overlap_rule;
};

// Tokens per rank per step: micro_batch_size * sequence_len * accumulation (each rank its own micro batches).
StepPrediction predict_step(const EstimateSetup& setup, const ClusterConfig& cluster, int gradient_accumulation_steps);

}  // namespace shardlab::estimate
