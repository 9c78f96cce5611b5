// Axolotl's FSDP keys (`fsdp: [full_shard, auto_wrap]`, `fsdp_config:`, `fsdp_version`) parsed into
// typed settings at the boundary; the sharding strategy later picks the engine's preset.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace shardlab::config {

// torch's ShardingStrategy, and the shardlab preset each one runs as:
// no_shard -> fsdp_no_shard (ddp), shard_grad_op -> fsdp_shard_grad_op (zero2),
// full_shard -> fsdp_full_shard (zero3), hybrid_shard -> fsdp_hybrid_shard.
enum class FsdpShardingStrategy { full_shard, shard_grad_op, hybrid_shard, no_shard };
enum class FsdpAutoWrapPolicy { none, transformer_based, size_based };
// How checkpoints are written: one full state dict (rank 0) or one shard per rank.
enum class FsdpStateDictType { full, sharded };
// When the next unit's parameters are gathered in backward (torch's BackwardPrefetch).
enum class FsdpBackwardPrefetch { backward_pre, backward_post, no_prefetch };

std::string_view to_string(FsdpShardingStrategy v);  // "FULL_SHARD", ...
std::string_view to_string(FsdpAutoWrapPolicy v);    // "NONE", "TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP"
std::string_view to_string(FsdpStateDictType v);     // "FULL_STATE_DICT", "SHARDED_STATE_DICT"
std::string_view to_string(FsdpBackwardPrefetch v);  // "BACKWARD_PRE", "BACKWARD_POST", "NO_PREFETCH"
// The shardlab preset name the strategy runs as ("fsdp_full_shard", ...), for dist::parse_preset.
std::string_view preset_name(FsdpShardingStrategy v);

struct FsdpSettings {
  bool enabled = false;  // `fsdp:` or `fsdp_config:` given
  FsdpShardingStrategy sharding_strategy = FsdpShardingStrategy::full_shard;
  // `auto_wrap` in the list, or an auto_wrap_policy: the wrapped units are the decoder layers
  // (transformer based) or every module of at least min_num_params parameters (size based).
  FsdpAutoWrapPolicy auto_wrap_policy = FsdpAutoWrapPolicy::none;
  std::string transformer_layer_cls_to_wrap;  // only LlamaDecoderLayer exists in shardlab
  std::optional<int64_t> min_num_params;      // size based only
  bool offload_params = false;                // `offload` in the list, or offload_params
  FsdpStateDictType state_dict_type = FsdpStateDictType::full;
  // Rank 0 alone reads the checkpoint; the others build the model and receive rank 0's weights.
  bool cpu_ram_efficient_loading = false;
  FsdpBackwardPrefetch backward_prefetch = FsdpBackwardPrefetch::backward_pre;
  bool forward_prefetch = false;
  // true: rank 0's parameters are broadcast when the engine is built (its initial broadcast).
  bool sync_module_states = true;
  // Either value describes shardlab's engine: the module keeps its named parameters (views of the
  // flat buffers) and the optimizer steps flat shards. Kept so the resolved config says it back.
  bool use_orig_params = true;
  int64_t version = 1;  // FSDP1 or FSDP2 (FSDP2's reshard_after_forward picks the strategy)
  // hybrid_shard: ranks per shard group (replicated across groups). Unset: ranks per node, and a
  // shardlab run is one node, so one group of every rank. Must divide the world size.
  std::optional<int64_t> hybrid_shard_group_size;
  bool activation_checkpointing = false;  // as gradient_checkpointing: true

  bool operator==(const FsdpSettings&) const = default;
};

// hybrid_shard's ranks per shard group: hybrid_shard_group_size, or (unset) the ranks of one node,
// which in shardlab is every rank (runs are single-node). An error names the key when it does not
// divide the world size.
int64_t hybrid_shard_group_size(const FsdpSettings& fsdp, int64_t world_size);

}  // namespace shardlab::config

namespace shardlab::config::detail {

class Reader;
struct Section;

// Reads the top-level `fsdp`, `fsdp_config` and `fsdp_version` keys. fsdp_config takes each key
// with or without Axolotl's `fsdp_` prefix (both at once is an error); the strategy comes from the
// `fsdp` list, sharding_strategy (FSDP1) or reshard_after_forward (FSDP2), which must agree.
FsdpSettings parse_fsdp(const Reader& rd, const Section& top);

}  // namespace shardlab::config::detail
