// Axolotl's FSDP keys: the `fsdp` list, the `fsdp_config` map (with or without the `fsdp_` prefix)
// and `fsdp_version`, read into FsdpSettings with every value checked where it is written.
#include "tools/config/fsdp_config.h"

#include "core/error.h"
#include "tools/config/config_reader.h"

namespace shardlab::config {

std::string_view to_string(FsdpShardingStrategy v) {
  switch (v) {
    case FsdpShardingStrategy::full_shard: return "FULL_SHARD";
    case FsdpShardingStrategy::shard_grad_op: return "SHARD_GRAD_OP";
    case FsdpShardingStrategy::hybrid_shard: return "HYBRID_SHARD";
    case FsdpShardingStrategy::no_shard: return "NO_SHARD";
  }
  return "?";
}

std::string_view to_string(FsdpAutoWrapPolicy v) {
  switch (v) {
    case FsdpAutoWrapPolicy::none: return "NONE";
    case FsdpAutoWrapPolicy::transformer_based: return "TRANSFORMER_BASED_WRAP";
    case FsdpAutoWrapPolicy::size_based: return "SIZE_BASED_WRAP";
  }
  return "?";
}

std::string_view to_string(FsdpStateDictType v) {
  return v == FsdpStateDictType::full ? "FULL_STATE_DICT" : "SHARDED_STATE_DICT";
}

std::string_view to_string(FsdpBackwardPrefetch v) {
  switch (v) {
    case FsdpBackwardPrefetch::backward_pre: return "BACKWARD_PRE";
    case FsdpBackwardPrefetch::backward_post: return "BACKWARD_POST";
    case FsdpBackwardPrefetch::no_prefetch: return "NO_PREFETCH";
  }
  return "?";
}

std::string_view preset_name(FsdpShardingStrategy v) {
  switch (v) {
    case FsdpShardingStrategy::full_shard: return "fsdp_full_shard";
    case FsdpShardingStrategy::shard_grad_op: return "fsdp_shard_grad_op";
    case FsdpShardingStrategy::hybrid_shard: return "fsdp_hybrid_shard";
    case FsdpShardingStrategy::no_shard: return "fsdp_no_shard";
  }
  return "?";
}

int64_t hybrid_shard_group_size(const FsdpSettings& fsdp, int64_t world_size) {
  const int64_t group = fsdp.hybrid_shard_group_size.value_or(world_size);
  SL_CHECK(world_size % group == 0, "fsdp_config.hybrid_shard_group_size ", group, " does not divide the world size ",
           world_size, " (HYBRID_SHARD replicates whole shard groups)");
  return group;
}

namespace detail {

namespace {

// A strategy and the key that chose it, so that a disagreement names both.
struct StrategyChoice {
  FsdpShardingStrategy strategy;
  std::string source;
  YAML::Node node;
};

void choose(const Reader& rd, std::optional<StrategyChoice>& chosen, StrategyChoice next) {
  if (chosen && chosen->strategy != next.strategy)
    rd.fail_at(next.node, next.source + " says " + std::string(to_string(next.strategy)) + " but " + chosen->source +
                              " says " + std::string(to_string(chosen->strategy)) + "; give the sharding strategy once");
  if (!chosen) chosen = std::move(next);
}

// The entries of `fsdp:`: a list ([full_shard, auto_wrap]) or HF's space-separated string.
void parse_fsdp_list(const Reader& rd, const Field& f, FsdpSettings& s, std::optional<StrategyChoice>& strategy) {
  std::vector<std::string> words;
  std::vector<YAML::Node> nodes;  // where each word was written
  if (f.value.IsSequence()) {
    for (std::size_t i = 0; i < f.value.size(); ++i) {
      if (!f.value[i].IsScalar()) rd.fail_at(f.value[i], "fsdp entries must be names such as full_shard, got " + describe(f.value[i]));
      words.push_back(f.value[i].Scalar());
      nodes.push_back(f.value[i]);
    }
  } else if (f.value.IsScalar()) {
    std::string word;
    for (char ch : f.value.Scalar() + " ") {
      if (ch != ' ') {
        word += ch;
      } else if (!word.empty()) {
        words.push_back(word);
        nodes.push_back(f.value);
        word.clear();
      }
    }
  } else {
    rd.fail_at(f.value, "fsdp must be a list such as [full_shard, auto_wrap], got " + describe(f.value));
  }
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    const YAML::Node& node = nodes[i];
    const std::string source = "fsdp entry '" + w + "'";
    if (w == "full_shard") choose(rd, strategy, {FsdpShardingStrategy::full_shard, source, node});
    else if (w == "shard_grad_op") choose(rd, strategy, {FsdpShardingStrategy::shard_grad_op, source, node});
    else if (w == "hybrid_shard") choose(rd, strategy, {FsdpShardingStrategy::hybrid_shard, source, node});
    else if (w == "no_shard") choose(rd, strategy, {FsdpShardingStrategy::no_shard, source, node});
    else if (w == "offload") s.offload_params = true;
    else if (w == "auto_wrap") {
      if (s.auto_wrap_policy == FsdpAutoWrapPolicy::none) s.auto_wrap_policy = FsdpAutoWrapPolicy::transformer_based;
    } else if (w == "hybrid_shard_zero2") {
      rd.fail_at(node, "fsdp entry 'hybrid_shard_zero2' is not supported (use hybrid_shard or shard_grad_op)");
    } else {
      rd.fail_at(node, "fsdp entry '" + w + "' is not one of full_shard, shard_grad_op, hybrid_shard, no_shard, "
                       "offload, auto_wrap");
    }
  }
}

// One fsdp_config key under either of Axolotl's spellings ("offload_params" / "fsdp_offload_params").
const Field* fsdp_key(const Reader& rd, const Section& s, const std::string& name) {
  const Field* bare = s.find(name);
  const Field* prefixed = s.find("fsdp_" + name);
  if (bare && prefixed)
    rd.fail_at(bare->key.Mark().pos > prefixed->key.Mark().pos ? bare->key : prefixed->key,
               "fsdp_config." + name + " and fsdp_config.fsdp_" + name + " are the same key; give it once");
  return bare ? bare : prefixed;
}

int64_t read_version(const Reader& rd, const Field& f) {
  const int64_t v = rd.integer(f, 1);
  if (v != 1 && v != 2) rd.fail_at(f.value, f.path + " must be 1 or 2, got '" + f.value.Scalar() + "'");
  return v;
}

void parse_fsdp_config(const Reader& rd, const Field& field, FsdpSettings& s, std::optional<StrategyChoice>& strategy,
                       std::optional<std::pair<int64_t, std::string>>& version) {
  const Section c = rd.section(field.value, "fsdp_config", fsdp_config_keys());
  const auto flag = [&](const char* name, bool& out) {
    if (const Field* f = fsdp_key(rd, c, name)) out = rd.boolean(*f);
  };
  if (const Field* f = fsdp_key(rd, c, "version")) version = {read_version(rd, *f), f->path};
  if (const Field* f = fsdp_key(rd, c, "sharding_strategy"))
    choose(rd, strategy,
           {rd.choice<FsdpShardingStrategy>(*f, {{"FULL_SHARD", FsdpShardingStrategy::full_shard},
                                                 {"SHARD_GRAD_OP", FsdpShardingStrategy::shard_grad_op},
                                                 {"HYBRID_SHARD", FsdpShardingStrategy::hybrid_shard},
                                                 {"NO_SHARD", FsdpShardingStrategy::no_shard}},
                                            {"_HYBRID_SHARD_ZERO2"}),
            f->path, f->value});
  if (const Field* f = fsdp_key(rd, c, "reshard_after_forward"))  // FSDP2's spelling of the strategy
    choose(rd, strategy,
           {rd.boolean(*f) ? FsdpShardingStrategy::full_shard : FsdpShardingStrategy::shard_grad_op, f->path, f->value});
  flag("offload_params", s.offload_params);
  if (const Field* f = fsdp_key(rd, c, "cpu_offload_pin_memory")) {
    rd.boolean(*f);  // type-checked only: pinning qualifies an offload, which startup rejects on the CPU
    if (!s.offload_params) rd.fail_at(f->key, f->path + " needs offload_params: true");
  }
  if (const Field* f = fsdp_key(rd, c, "auto_wrap_policy"))
    s.auto_wrap_policy = rd.choice<FsdpAutoWrapPolicy>(
        *f, {{"TRANSFORMER_BASED_WRAP", FsdpAutoWrapPolicy::transformer_based},
             {"SIZE_BASED_WRAP", FsdpAutoWrapPolicy::size_based}});
  const Field* cls = fsdp_key(rd, c, "transformer_layer_cls_to_wrap");
  if (cls) {
    s.transformer_layer_cls_to_wrap = rd.string(*cls);
    if (s.transformer_layer_cls_to_wrap != "LlamaDecoderLayer")
      rd.fail_at(cls->value, cls->path + " '" + s.transformer_layer_cls_to_wrap +
                                 "' is not a layer shardlab has; the only wrappable layer is LlamaDecoderLayer");
    if (s.auto_wrap_policy == FsdpAutoWrapPolicy::none) s.auto_wrap_policy = FsdpAutoWrapPolicy::transformer_based;
  }
  const Field* min_params = fsdp_key(rd, c, "min_num_params");
  if (min_params) s.min_num_params = rd.integer(*min_params, 1);
  if (s.auto_wrap_policy == FsdpAutoWrapPolicy::transformer_based) {
    if (min_params) rd.fail_at(min_params->key, min_params->path + " only applies to auto_wrap_policy SIZE_BASED_WRAP");
    s.transformer_layer_cls_to_wrap = "LlamaDecoderLayer";
  }
  if (s.auto_wrap_policy == FsdpAutoWrapPolicy::size_based) {
    if (!min_params) rd.fail_at(field.key, "fsdp_config.auto_wrap_policy SIZE_BASED_WRAP needs min_num_params");
    if (cls) rd.fail_at(cls->key, cls->path + " only applies to auto_wrap_policy TRANSFORMER_BASED_WRAP");
  }
  if (const Field* f = fsdp_key(rd, c, "state_dict_type"))
    s.state_dict_type = rd.choice<FsdpStateDictType>(
        *f, {{"FULL_STATE_DICT", FsdpStateDictType::full}, {"SHARDED_STATE_DICT", FsdpStateDictType::sharded}},
        {"LOCAL_STATE_DICT"});
  if (const Field* f = fsdp_key(rd, c, "final_state_dict_type"))
    rd.choice<FsdpStateDictType>(*f, {{"FULL_STATE_DICT", FsdpStateDictType::full}},
                                 {"SHARDED_STATE_DICT", "LOCAL_STATE_DICT"});  // the final model is saved whole
  flag("cpu_ram_efficient_loading", s.cpu_ram_efficient_loading);
  if (const Field* f = fsdp_key(rd, c, "backward_prefetch"))
    s.backward_prefetch = rd.choice<FsdpBackwardPrefetch>(
        *f, {{"BACKWARD_PRE", FsdpBackwardPrefetch::backward_pre},
             {"BACKWARD_POST", FsdpBackwardPrefetch::backward_post},
             {"NO_PREFETCH", FsdpBackwardPrefetch::no_prefetch}});
  flag("forward_prefetch", s.forward_prefetch);
  flag("sync_module_states", s.sync_module_states);
  flag("use_orig_params", s.use_orig_params);
  flag("activation_checkpointing", s.activation_checkpointing);
  if (const Field* f = fsdp_key(rd, c, "hybrid_shard_group_size")) s.hybrid_shard_group_size = rd.integer(*f, 1);
}

}  // namespace

FsdpSettings parse_fsdp(const Reader& rd, const Section& top) {
  FsdpSettings s;
  std::optional<StrategyChoice> strategy;
  std::optional<std::pair<int64_t, std::string>> version;
  const Field* list = top.find("fsdp");
  const Field* cfg = top.find("fsdp_config");
  // `fsdp: []` or `fsdp_config: {}` is "not set", as Axolotl's examples write them.
  const bool list_given = list && !(list->value.IsSequence() && list->value.size() == 0) &&
                          !(list->value.IsScalar() && list->value.Scalar().empty());
  const bool cfg_given = cfg && !(cfg->value.IsMap() && cfg->value.size() == 0);
  if (list_given) parse_fsdp_list(rd, *list, s, strategy);
  if (cfg_given) parse_fsdp_config(rd, *cfg, s, strategy, version);
  if (const Field* f = top.find("fsdp_version")) {
    const int64_t v = read_version(rd, *f);
    if (version && version->first != v)
      rd.fail_at(f->value, "fsdp_version is " + std::to_string(v) + " but " + version->second + " is " +
                               std::to_string(version->first));
    version = {v, f->path};
    if (!list_given && !cfg_given) rd.fail_at(f->key, "fsdp_version needs fsdp_config (or fsdp) to say what to shard");
  }
  s.enabled = list_given || cfg_given;
  if (!s.enabled) return FsdpSettings{};
  if (version) s.version = version->first;
  if (strategy) s.sharding_strategy = strategy->strategy;
  if (s.hybrid_shard_group_size && s.sharding_strategy != FsdpShardingStrategy::hybrid_shard)
    rd.fail_at(cfg->key, "fsdp_config.hybrid_shard_group_size only applies to the HYBRID_SHARD strategy, not " +
                             std::string(to_string(s.sharding_strategy)));
  return s;
}

}  // namespace detail

}  // namespace shardlab::config
