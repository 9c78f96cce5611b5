// The ZeRO paper's model-state and traffic formulas, and their side-by-side table.
#include "distributed/zero_theory.h"

#include <cstdio>

namespace shardlab::dist {

double optimizer_bytes_per_param(OptimizerStateKind kind, bool master_weights) {
  double k = 0;
  switch (kind) {
    case OptimizerStateKind::adamw: k = 8; break;
    case OptimizerStateKind::adamw_8bit: k = 2 + 8.0 / 256.0; break;
    case OptimizerStateKind::sgd: k = 0; break;
    case OptimizerStateKind::sgd_momentum: k = 4; break;
  }
  return k + (master_weights ? 4 : 0);
}

ModelStateBytes zero_model_state_theory(Preset preset, int64_t psi, int world_size, DType param_dtype,
                                        DType reduce_dtype, double optimizer_bytes_per_param) {
  const ShardingPlan plan = ShardingPlan::of(preset);
  const double n = world_size, p = static_cast<double>(psi);
  ModelStateBytes t;
  t.parameters = p * dtype_bytes(param_dtype, 1) / (plan.shard_parameters ? n : 1.0);
  t.gradients = p * dtype_bytes(reduce_dtype, 1) / (plan.shard_gradients ? n : 1.0);
  t.optimizer_state = p * optimizer_bytes_per_param / (plan.shard_optimizer_state ? n : 1.0);
  return t;
}

double zero_step_traffic_elements(Preset preset, int64_t psi) {
  // DDP, ZeRO-1/2 move each gradient element once through a reduce-scatter and each parameter (or
  // reduced gradient) element once through an all-gather; ZeRO-3 gathers every parameter twice
  // (forward and backward) besides the reduce-scatter.
  return (shards_parameters(preset) ? 3.0 : 2.0) * static_cast<double>(psi);
}

double ring_wire_elements(double traffic_elements, int world_size) {
  return world_size <= 1 ? 0.0 : traffic_elements * (world_size - 1) / world_size;
}

std::string model_state_table(const ModelStateBytes& measured, const ModelStateBytes& theory) {
  std::string out = "model state        measured MiB   theory MiB   measured/theory\n";
  char line[128];
  auto row = [&](const char* name, double m, double t) {
    std::snprintf(line, sizeof line, "%-17s %13.3f %12.3f %17.4f\n", name, m / 1048576.0, t / 1048576.0,
                  t > 0 ? m / t : (m == 0 ? 1.0 : 0.0));
    out += line;
  };
  row("parameters", measured.parameters, theory.parameters);
  row("gradients", measured.gradients, theory.gradients);
  row("optimizer state", measured.optimizer_state, theory.optimizer_state);
  row("total", measured.total(), theory.total());
  return out;
}

}  // namespace shardlab::dist
