// Mapping a train config's DeepSpeed or FSDP block onto the data-parallel engine's options.
#include "tools/cli/data_parallel_options.h"

#include "core/error.h"

namespace shardlab::cli {

namespace {

dist::BackwardPrefetch backward_prefetch(config::FsdpBackwardPrefetch p) {
  switch (p) {
    case config::FsdpBackwardPrefetch::backward_pre: return dist::BackwardPrefetch::backward_pre;
    case config::FsdpBackwardPrefetch::backward_post: return dist::BackwardPrefetch::backward_post;
    case config::FsdpBackwardPrefetch::no_prefetch: return dist::BackwardPrefetch::none;
  }
  return dist::BackwardPrefetch::backward_pre;
}

void apply_fsdp(const config::FsdpSettings& f, int world_size, dist::DataParallelOptions& o) {
  const std::string strategy(config::to_string(f.sharding_strategy));
  o.preset = dist::parse_preset(std::string(config::preset_name(f.sharding_strategy)));
  if (dist::shards_parameters(o.preset)) {
    // FSDP's units: decoder layers (transformer auto-wrap). FSDP2 wraps them by default; FSDP1
    // without auto_wrap would make the whole model one unit, a layout the engine does not have.
    const bool decoder_layers = f.auto_wrap_policy == config::FsdpAutoWrapPolicy::transformer_based ||
                                (f.auto_wrap_policy == config::FsdpAutoWrapPolicy::none && f.version == 2);
    SL_CHECK(f.auto_wrap_policy != config::FsdpAutoWrapPolicy::size_based, "fsdp_config.auto_wrap_policy "
             "SIZE_BASED_WRAP with ", strategy, " is not supported: units are decoder layers; use TRANSFORMER_BASED_WRAP");
    SL_CHECK(decoder_layers, "fsdp ", strategy, " without auto_wrap would make the whole model one unit, which is not "
             "supported; add auto_wrap to the fsdp list (units are LlamaDecoderLayer)");
    o.wrap = dist::WrapPolicy::decoder_layer;
    o.transformer_layer_cls_to_wrap = {"LlamaDecoderLayer"};
  }
  o.forward_prefetch = f.forward_prefetch;
  o.backward_prefetch = backward_prefetch(f.backward_prefetch);
  o.broadcast_initial_parameters = f.sync_module_states;
  o.offload_param = f.offload_params;  // FSDP's CPUOffload: shards, gradients and the optimizer step on the host
  if (o.preset == dist::Preset::hybrid_shard)
    o.hybrid_shard_group_size = static_cast<int>(config::hybrid_shard_group_size(f, world_size));
}

}  // namespace

dist::DataParallelOptions data_parallel_options(const config::TrainConfig& cfg, const config::DistributedSettings& ds,
                                                int world_size) {
  dist::DataParallelOptions o;
  if (cfg.fsdp.enabled) {
    apply_fsdp(cfg.fsdp, world_size, o);
  } else if (!cfg.deepspeed.empty()) {
    o.preset = dist::preset_from_zero_stage(ds.zero_stage);
    SL_CHECK(ds.reduce_bucket_size.has_value() && ds.stage3_prefetch_bucket_size.has_value() &&
                 ds.stage3_param_persistence_threshold.has_value(),
             "data_parallel_options: \"auto\" sizes must be resolved first (check_distributed_runtime)");
    o.reduce_bucket_size = *ds.reduce_bucket_size;
    o.allgather_bucket_size = ds.allgather_bucket_size;
    o.overlap_comm = ds.overlap_comm;
    if (o.preset == dist::Preset::zero3) {
      // DeepSpeed stage 3 fetches parameters one by one (with prefetch), not per wrapped layer.
      o.wrap = dist::WrapPolicy::per_parameter;
      o.prefetch_bucket_size = *ds.stage3_prefetch_bucket_size;
      o.param_persistence_threshold = *ds.stage3_param_persistence_threshold;
    }
    o.offload_optimizer = ds.offload_optimizer.device == config::OffloadDevice::cpu;
    o.offload_param = ds.offload_param.device == config::OffloadDevice::cpu;
  }
  dist::validate(o);
  return o;
}

std::string describe(const dist::DataParallelOptions& o, int world_size) {
  std::string s = std::string("preset ") + dist::preset_name(o.preset) + ", reduce bucket " +
                  std::to_string(o.reduce_bucket_size) + " elements";
  if (dist::shards_parameters(o.preset)) {
    s += std::string(", units ") + dist::wrap_policy_name(o.wrap) + ", prefetch bucket " +
         std::to_string(o.prefetch_bucket_size) + " elements, forward_prefetch " + (o.forward_prefetch ? "on" : "off") +
         ", backward_prefetch " + dist::backward_prefetch_name(o.backward_prefetch) + ", persistence threshold " +
         std::to_string(o.param_persistence_threshold);
    if (o.preset == dist::Preset::hybrid_shard)
      s += ", shard groups of " + std::to_string(o.hybrid_shard_group_size > 0 ? o.hybrid_shard_group_size : world_size) +
           " ranks";
  } else if (o.preset != dist::Preset::ddp) {
    s += ", all-gather bucket " + std::to_string(o.allgather_bucket_size) + " elements";
  }
  if (o.offload_param)
    s += ", parameters offloaded to the CPU (parameter and gradient shards, fp32 masters and optimizer state on the "
         "host; each unit uploaded for its gather)";
  else if (o.offload_optimizer)
    s += ", optimizer offloaded to the CPU (fp32 masters and state on the host)";
  s += std::string(", overlap_comm ") + (o.overlap_comm ? "on" : "off");
  if (!o.broadcast_initial_parameters) s += ", no initial broadcast (sync_module_states false)";
  return s;
}

}  // namespace shardlab::cli
