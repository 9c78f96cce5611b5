// NOTE [overlap rule]: gradient reduction (bucketed, issued from the gradient-ready hooks) overlaps
// the backward pass up to the backward's duration (2/3 of the compute), except the last bucket,
// which can only start when backward ends. ZeRO-1/2's all-gather of updated parameters runs after
// the optimizer step and is fully exposed. ZeRO-3's forward all-gathers are prefetched and hide
// behind the forward (1/3 of compute) except the first unit's; its backward all-gathers share the
// backward with the reduce-scatters. Hybrid: the in-group collectives as ZeRO-3 plus an exposed
// cross-group all-reduce of the 1/G gradient shard (it runs after the in-group reduce-scatter).
#include "tools/estimator/step_time_model.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "tools/estimator/memory_estimate.h"

namespace shardlab::estimate {

double ring_seconds(dist::CollectiveKind kind, double bytes, int n, const Link& link) {
  if (n <= 1) return 0.0;
  const double a = link.latency_s, b = link.bandwidth_Bps;
  switch (kind) {
    case dist::CollectiveKind::all_reduce: return 2.0 * (n - 1) * a + 2.0 * (n - 1) / n * bytes / b;
    case dist::CollectiveKind::reduce_scatter:
    case dist::CollectiveKind::all_gather: return (n - 1) * a + static_cast<double>(n - 1) / n * bytes / b;
    case dist::CollectiveKind::broadcast: return (n - 1) * a + bytes / b;
    case dist::CollectiveKind::barrier: return 2.0 * (n - 1) * a;
  }
  return 0.0;
}

LinearFit fit_relative(const std::vector<double>& xs, const std::vector<double>& ts) {
  SL_CHECK(xs.size() == ts.size() && xs.size() >= 2, "fit_relative: needs at least 2 points of (x, t), got ",
           xs.size(), " x and ", ts.size(), " t");
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    SL_CHECK(ts[i] > 0, "fit_relative: time ", ts[i], " at x = ", xs[i], " must be positive");
    const double w = 1.0 / (ts[i] * ts[i]);
    sw += w, sx += w * xs[i], sy += w * ts[i], sxx += w * xs[i] * xs[i], sxy += w * xs[i] * ts[i];
  }
  const double det = sw * sxx - sx * sx;
  SL_CHECK(det > 0, "fit_relative: every x is the same (", xs[0], ")");
  return {(sxx * sy - sx * sxy) / det, (sw * sxy - sx * sy) / det};
}

const Link& link_for_group(const ClusterConfig& cluster, int n) {
  if (n <= cluster.gpus_per_node) return cluster.intra_node;
  SL_CHECK(cluster.inter_node.bandwidth_Bps > 0, cluster.name, ": a group of ", n, " ranks spans nodes of ",
           cluster.gpus_per_node, " but the cluster has no inter_node link");
  return cluster.inter_node;
}

double flops_per_token(const EstimateSetup& setup) {
  const models::LlamaConfig& c = setup.model;
  const ParameterCounts n = count_parameters(setup);
  const double head = static_cast<double>(c.vocab_size) * c.hidden_size;  // lm_head (tied: the same GEMM)
  const double weights = n.projections + head;                            // the embedding lookup is no GEMM
  const double attention = 2.0 * setup.sequence_len * c.num_attention_heads * c.resolved_head_dim() *
                           c.num_hidden_layers;  // forward, per token
  double f = (setup.adapter == AdapterKind::none ? 6.0 * weights : 4.0 * weights + 6.0 * n.trained) + 3.0 * attention;
  if (setup.gradient_checkpointing) f += 2.0 * n.projections + attention;
  return f;
}

StepPrediction predict_step(const EstimateSetup& setup, const ClusterConfig& cluster, int accumulation) {
  SL_CHECK(setup.world_size <= cluster.world_size(), "simulate: world size ", setup.world_size, " exceeds the ",
           cluster.world_size(), " devices of ", cluster.name);
  StepPrediction p;
  p.tokens_per_rank = static_cast<double>(setup.micro_batch_size) * setup.sequence_len * accumulation;
  p.flops = flops_per_token(setup) * p.tokens_per_rank;
  p.compute_seconds = p.flops / (cluster.peak_tflops * 1e12 * cluster.compute_efficiency);
  const double forward = p.compute_seconds / 3.0, backward = p.compute_seconds - forward;

  const int N = setup.world_size, G = setup.shard_group_size();
  const double psi = count_parameters(setup).trained, s = compute_bytes(setup.precision);
  const double bucket = std::min(psi, static_cast<double>(setup.resolved_bucket_elements()));
  const double buckets = std::ceil(psi / bucket);
  // One bucketed collective kind over a whole step: buckets calls of bucket*s bytes each.
  auto bucketed = [&](dist::CollectiveKind kind, int n) {
    return buckets * ring_seconds(kind, bucket * s, n, link_for_group(cluster, n));
  };
  auto one_bucket = [&](dist::CollectiveKind kind, int n) { return ring_seconds(kind, bucket * s, n, link_for_group(cluster, n)); };
  using K = dist::CollectiveKind;
  double hidden_in_backward = 0, hidden_in_forward = 0;
  auto reduction = [&](const char* what, K kind, int n) {
    const double t = bucketed(kind, n);
    p.collectives.push_back({what, t, std::max(0.0, t - one_bucket(kind, n))});
  };
  switch (setup.preset) {
    case dist::Preset::ddp: reduction("gradient all-reduce", K::all_reduce, N); break;
    case dist::Preset::zero1:
    case dist::Preset::zero2:
      reduction("gradient reduce-scatter", K::reduce_scatter, N);
      p.collectives.push_back({"parameter all-gather", bucketed(K::all_gather, N), 0.0});
      break;
    case dist::Preset::zero3:
    case dist::Preset::hybrid_shard: {
      const double gather = bucketed(K::all_gather, G);
      const double first = ring_seconds(K::all_gather, count_parameters(setup).largest_layer * s, G, link_for_group(cluster, G));
      p.collectives.push_back({"forward all-gather", gather, std::max(0.0, gather - first)});
      reduction("backward all-gather", K::all_gather, G);
      reduction("gradient reduce-scatter", K::reduce_scatter, G);
      if (G < N) {
        const int groups = N / G;
        p.collectives.push_back({"cross-group all-reduce", ring_seconds(K::all_reduce, psi * s / G, groups,
                                                                         link_for_group(cluster, N)), 0.0});
      }
      break;
    }
  }
  // Overlappable time hides behind the phase it runs in, up to that phase's length.
  for (const CollectiveTime& c : p.collectives) {
    p.comm_seconds += c.seconds;
    const bool fwd = c.what == "forward all-gather";
    double& used = fwd ? hidden_in_forward : hidden_in_backward;
    const double room = std::max(0.0, (fwd ? forward : backward) - used);
    const double hidden = std::min(c.overlappable, room);
    used += hidden;
    p.exposed_comm_seconds += c.seconds - hidden;
  }
  p.step_seconds = p.compute_seconds + p.exposed_comm_seconds;
  p.overlap_rule = "bucketed reductions hide behind backward (all but the last bucket), forward all-gathers behind "
                   "forward (all but the first unit); ZeRO-1/2 parameter all-gather and hybrid cross-group all-reduce exposed";
  return p;
}

}  // namespace shardlab::estimate
