// Preset names, aliases and the sharding plan each preset stands for.
#include "distributed/sharding_plan.h"

#include "core/error.h"

namespace shardlab::dist {

const char* preset_name(Preset preset) {
  switch (preset) {
    case Preset::ddp: return "ddp";
    case Preset::zero1: return "zero1";
    case Preset::zero2: return "zero2";
  }
  return "?";
}

Preset parse_preset(const std::string& text) {
  if (text == "ddp" || text == "fsdp_no_shard") return Preset::ddp;
  if (text == "zero1") return Preset::zero1;
  if (text == "zero2" || text == "fsdp_shard_grad_op") return Preset::zero2;
  if (text == "zero3" || text == "fsdp_full_shard" || text == "fsdp_hybrid_shard")
    SL_FAIL("sharding preset '", text, "' is not supported yet (Distributed II); use ddp, zero1 or zero2 ",
            "(fsdp_no_shard, fsdp_shard_grad_op)");
  SL_FAIL("unknown sharding preset '", text,
          "'; known: ddp, zero1, zero2, fsdp_no_shard, fsdp_shard_grad_op");
}

Preset preset_from_zero_stage(int64_t stage) {
  switch (stage) {
    case 0: return Preset::ddp;
    case 1: return Preset::zero1;
    case 2: return Preset::zero2;
    case 3: SL_FAIL("zero_optimization.stage 3 is not supported yet (Distributed II); use stage 0, 1 or 2");
    default: SL_FAIL("zero_optimization.stage ", stage, " is not a ZeRO stage (0, 1, 2 or 3)");
  }
}

ShardingPlan ShardingPlan::of(Preset preset) {
  ShardingPlan p;
  p.shard_optimizer_state = preset != Preset::ddp;
  p.shard_gradients = preset == Preset::zero2;
  return p;
}

void validate(const DataParallelOptions& options) {
  SL_CHECK(options.reduce_bucket_size > 0, "data parallel: reduce_bucket_size must be > 0 (got ",
           options.reduce_bucket_size, ")");
  SL_CHECK(options.allgather_bucket_size > 0, "data parallel: allgather_bucket_size must be > 0 (got ",
           options.allgather_bucket_size, ")");
  SL_CHECK(options.contiguous_gradients,
           "data parallel: contiguous_gradients false is not supported (gradients always go to contiguous buckets)");
}

}  // namespace shardlab::dist
