// Preset names, aliases and the sharding plan each preset stands for.
#include "distributed/sharding_plan.h"

#include "core/error.h"

namespace shardlab::dist {

const char* preset_name(Preset preset) {
  switch (preset) {
    case Preset::ddp: return "ddp";
    case Preset::zero1: return "zero1";
    case Preset::zero2: return "zero2";
    case Preset::zero3: return "zero3";
    case Preset::hybrid_shard: return "fsdp_hybrid_shard";
  }
  return "?";
}

const char* wrap_policy_name(WrapPolicy wrap) {
  return wrap == WrapPolicy::decoder_layer ? "decoder_layer" : "per_parameter";
}

WrapPolicy parse_wrap_policy(const std::string& text) {
  if (text == "decoder_layer") return WrapPolicy::decoder_layer;
  if (text == "per_parameter") return WrapPolicy::per_parameter;
  SL_FAIL("unknown wrap policy '", text, "'; known: decoder_layer, per_parameter");
}

const char* backward_prefetch_name(BackwardPrefetch prefetch) {
  switch (prefetch) {
    case BackwardPrefetch::backward_pre: return "backward_pre";
    case BackwardPrefetch::backward_post: return "backward_post";
    case BackwardPrefetch::none: return "none";
  }
  return "?";
}

BackwardPrefetch parse_backward_prefetch(const std::string& text) {
  if (text == "backward_pre" || text == "BACKWARD_PRE") return BackwardPrefetch::backward_pre;
  if (text == "backward_post" || text == "BACKWARD_POST") return BackwardPrefetch::backward_post;
  if (text == "none" || text == "NO_PREFETCH") return BackwardPrefetch::none;
  SL_FAIL("unknown backward prefetch '", text, "'; known: backward_pre, backward_post, none ",
          "(BACKWARD_PRE, BACKWARD_POST, NO_PREFETCH)");
}

Preset parse_preset(const std::string& text) {
  if (text == "ddp" || text == "fsdp_no_shard") return Preset::ddp;
  if (text == "zero1") return Preset::zero1;
  if (text == "zero2" || text == "fsdp_shard_grad_op") return Preset::zero2;
  if (text == "zero3" || text == "fsdp_full_shard") return Preset::zero3;
  if (text == "fsdp_hybrid_shard" || text == "hybrid_shard") return Preset::hybrid_shard;
  SL_FAIL("unknown sharding preset '", text, "'; known: ddp, zero1, zero2, zero3, fsdp_no_shard, ",
          "fsdp_shard_grad_op, fsdp_full_shard, fsdp_hybrid_shard");
}

Preset preset_from_zero_stage(int64_t stage) {
  switch (stage) {
    case 0: return Preset::ddp;
    case 1: return Preset::zero1;
    case 2: return Preset::zero2;
    case 3: return Preset::zero3;
    default: SL_FAIL("zero_optimization.stage ", stage, " is not a ZeRO stage (0, 1, 2 or 3)");
  }
}

ShardingPlan ShardingPlan::of(Preset preset) {
  ShardingPlan p;
  p.shard_optimizer_state = preset != Preset::ddp;
  p.shard_gradients = preset == Preset::zero2 || shards_parameters(preset);
  p.shard_parameters = shards_parameters(preset);
  p.replicate_across_groups = preset == Preset::hybrid_shard;
  return p;
}

void validate(const DataParallelOptions& options) {
  SL_CHECK(options.reduce_bucket_size > 0, "data parallel: reduce_bucket_size must be > 0 (got ",
           options.reduce_bucket_size, ")");
  SL_CHECK(options.allgather_bucket_size > 0, "data parallel: allgather_bucket_size must be > 0 (got ",
           options.allgather_bucket_size, ")");
  SL_CHECK(options.contiguous_gradients,
           "data parallel: contiguous_gradients false is not supported (gradients always go to contiguous buckets)");
  SL_CHECK(options.hybrid_shard_group_size >= 0, "data parallel: hybrid_shard_group_size must be >= 0 (got ",
           options.hybrid_shard_group_size, ")");
  SL_CHECK(options.hybrid_shard_group_size == 0 || options.preset == Preset::hybrid_shard,
           "data parallel: hybrid_shard_group_size is set (", options.hybrid_shard_group_size, ") but the preset is ",
           preset_name(options.preset), ", not fsdp_hybrid_shard");
  SL_CHECK(options.prefetch_bucket_size >= 0, "data parallel: prefetch_bucket_size must be >= 0 (got ",
           options.prefetch_bucket_size, ")");
  SL_CHECK(!options.offload_param || shards_parameters(options.preset), "data parallel: offload_param with ",
           preset_name(options.preset), ": only parameter sharding (zero3, fsdp_full_shard, fsdp_hybrid_shard) "
           "offloads parameters (use offload_optimizer for ddp, zero1 and zero2)");
  SL_CHECK(options.param_persistence_threshold >= 0, "data parallel: param_persistence_threshold must be >= 0 (got ",
           options.param_persistence_threshold, ")");
  SL_CHECK(options.wrap != WrapPolicy::decoder_layer || !options.transformer_layer_cls_to_wrap.empty(),
           "data parallel: wrap decoder_layer with an empty transformer_layer_cls_to_wrap");
}

}  // namespace shardlab::dist
