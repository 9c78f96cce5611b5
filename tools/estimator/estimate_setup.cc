// Names and small derived quantities of an EstimateSetup.
#include "tools/estimator/estimate_setup.h"

#include "core/error.h"

namespace shardlab::estimate {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::f32: return "f32";
    case Precision::bf16_masters: return "bf16+masters";
    case Precision::fp16_masters: return "fp16+masters";
  }
  return "?";
}

const char* optimizer_name(OptimizerKind o) {
  switch (o) {
    case OptimizerKind::adamw: return "adamw";
    case OptimizerKind::adamw_8bit: return "adamw_8bit";
    case OptimizerKind::sgd: return "sgd";
  }
  return "?";
}

const char* adapter_name(AdapterKind a) {
  switch (a) {
    case AdapterKind::none: return "full";
    case AdapterKind::lora: return "lora";
    case AdapterKind::qlora: return "qlora";
  }
  return "?";
}

int EstimateSetup::shard_group_size() const {
  SL_CHECK(world_size >= 1, "estimate: world size ", world_size, " must be >= 1");
  if (preset != dist::Preset::hybrid_shard || hybrid_group_size <= 0) return world_size;
  SL_CHECK(world_size % hybrid_group_size == 0, "estimate: hybrid group size ", hybrid_group_size,
           " does not divide the world size ", world_size);
  return hybrid_group_size;
}

double compute_bytes(Precision p) { return p == Precision::f32 ? 4.0 : 2.0; }

}  // namespace shardlab::estimate
