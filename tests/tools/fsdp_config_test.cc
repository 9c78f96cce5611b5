// Axolotl's FSDP keys: the FSDP1 form (`fsdp: [full_shard, auto_wrap]` + `fsdp_`-prefixed
// fsdp_config) and the FSDP2 form (fsdp_version 2, unprefixed keys, reshard_after_forward) load into
// typed settings; every bad value, contradiction and startup impossibility is an error naming the key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "tests/tools/config_test_util.h"
#include "tools/config/deepspeed_config.h"
#include "tools/config/train_config.h"

namespace shardlab::config {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

const std::string kBase = "base_model: m\ndatasets:\n  - path: d.jsonl\n    type: completion\n";

TrainConfig parse(const std::string& extra) { return parse_train_config(kBase + extra, "f.yaml"); }

std::string parse_error(const std::string& extra) {
  return error_of([&] { parse(extra); });
}
std::string runtime_error(const std::string& extra, int64_t world) {
  return error_of([&] { check_distributed_runtime(parse(extra), {world, 32}); });
}

// As Axolotl's FSDP1 examples write it (examples/llama-3/*fsdp*.yaml style).
const std::string kFsdp1 = R"(fsdp:
  - full_shard
  - auto_wrap
fsdp_config:
  fsdp_offload_params: false
  fsdp_cpu_ram_efficient_loading: true
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer
  fsdp_state_dict_type: SHARDED_STATE_DICT
  fsdp_sharding_strategy: FULL_SHARD
  fsdp_forward_prefetch: true
  fsdp_backward_prefetch: BACKWARD_POST
  fsdp_sync_module_states: true
  fsdp_use_orig_params: false
)";

TEST(FsdpConfig, AxolotlFsdp1FormLoadsEveryKey) {
  const FsdpSettings f = parse(kFsdp1).fsdp;
  EXPECT_TRUE(f.enabled);
  EXPECT_EQ(f.version, 1);
  EXPECT_EQ(f.sharding_strategy, FsdpShardingStrategy::full_shard);
  EXPECT_EQ(preset_name(f.sharding_strategy), "fsdp_full_shard");
  EXPECT_EQ(f.auto_wrap_policy, FsdpAutoWrapPolicy::transformer_based);
  EXPECT_EQ(f.transformer_layer_cls_to_wrap, "LlamaDecoderLayer");
  EXPECT_FALSE(f.offload_params);
  EXPECT_TRUE(f.cpu_ram_efficient_loading);
  EXPECT_EQ(f.state_dict_type, FsdpStateDictType::sharded);
  EXPECT_TRUE(f.forward_prefetch);
  EXPECT_EQ(f.backward_prefetch, FsdpBackwardPrefetch::backward_post);
  EXPECT_TRUE(f.sync_module_states);
  EXPECT_FALSE(f.use_orig_params);
  EXPECT_FALSE(f.hybrid_shard_group_size.has_value());
  // Without fsdp keys nothing is on.
  EXPECT_EQ(parse("").fsdp, FsdpSettings{});
}

TEST(FsdpConfig, Fsdp2FormUnprefixedWithReshardAfterForward) {
  const TrainConfig c = parse(R"(fsdp_version: 2
fsdp_config:
  reshard_after_forward: false
  auto_wrap_policy: SIZE_BASED_WRAP
  min_num_params: 100000
  state_dict_type: FULL_STATE_DICT
  activation_checkpointing: true
)");
  EXPECT_EQ(c.fsdp.version, 2);
  EXPECT_EQ(c.fsdp.sharding_strategy, FsdpShardingStrategy::shard_grad_op);  // no resharding: ZeRO-2
  EXPECT_EQ(c.fsdp.auto_wrap_policy, FsdpAutoWrapPolicy::size_based);
  EXPECT_EQ(c.fsdp.min_num_params, 100000);
  EXPECT_TRUE(c.gradient_checkpointing);  // activation_checkpointing is per-layer checkpointing
  EXPECT_EQ(parse("fsdp_config:\n  version: 2\n  reshard_after_forward: true\n").fsdp.sharding_strategy,
            FsdpShardingStrategy::full_shard);
}

TEST(FsdpConfig, EveryStrategyMapsToItsPreset) {
  const std::pair<const char*, const char*> cases[] = {{"no_shard", "fsdp_no_shard"},
                                                       {"shard_grad_op", "fsdp_shard_grad_op"},
                                                       {"full_shard", "fsdp_full_shard"},
                                                       {"hybrid_shard", "fsdp_hybrid_shard"}};
  for (const auto& [entry, preset] : cases) {
    const FsdpSettings f = parse(std::string("fsdp: [") + entry + ", auto_wrap]\n").fsdp;
    EXPECT_EQ(preset_name(f.sharding_strategy), preset) << entry;
    EXPECT_EQ(f.auto_wrap_policy, FsdpAutoWrapPolicy::transformer_based) << entry;
  }
  // Hugging Face's space-separated string, and `offload` in the list.
  const FsdpSettings s = parse("fsdp: \"shard_grad_op offload\"\n").fsdp;
  EXPECT_EQ(s.sharding_strategy, FsdpShardingStrategy::shard_grad_op);
  EXPECT_TRUE(s.offload_params);
  EXPECT_EQ(s.auto_wrap_policy, FsdpAutoWrapPolicy::none);
  EXPECT_EQ(parse("fsdp_config:\n  sharding_strategy: NO_SHARD\n").fsdp.sharding_strategy, FsdpShardingStrategy::no_shard);
}

TEST(FsdpConfig, BadValuesAndContradictionsNameTheKey) {
  EXPECT_THAT(parse_error("fsdp_config:\n  fsdp_transformer_layer_cls_to_wrap: MistralDecoderLayer\n"),
              AllOf(HasSubstr("f.yaml:6:39"), HasSubstr("fsdp_config.fsdp_transformer_layer_cls_to_wrap 'MistralDecoderLayer'"),
                    HasSubstr("the only wrappable layer is LlamaDecoderLayer")));
  EXPECT_THAT(parse_error("fsdp_config:\n  offload_params: false\n  fsdp_offload_params: true\n"),
              HasSubstr("fsdp_config.offload_params and fsdp_config.fsdp_offload_params are the same key"));
  EXPECT_THAT(parse_error("fsdp: [full_shard]\nfsdp_config:\n  fsdp_sharding_strategy: SHARD_GRAD_OP\n"),
              HasSubstr("fsdp_config.fsdp_sharding_strategy says SHARD_GRAD_OP but fsdp entry 'full_shard' says FULL_SHARD"));
  EXPECT_THAT(parse_error("fsdp_config:\n  sharding_strategy: FULL_SHARD\n  reshard_after_forward: false\n"),
              HasSubstr("reshard_after_forward says SHARD_GRAD_OP but fsdp_config.sharding_strategy says FULL_SHARD"));
  EXPECT_THAT(parse_error("fsdp: [full_shard, shard_grad_op]\n"), HasSubstr("give the sharding strategy once"));
  EXPECT_THAT(parse_error("fsdp: [full_shard, zero3]\n"),
              HasSubstr("fsdp entry 'zero3' is not one of full_shard, shard_grad_op, hybrid_shard, no_shard, offload, auto_wrap"));
  EXPECT_THAT(parse_error("fsdp_config:\n  auto_wrap_policy: SIZE_BASED_WRAP\n"),
              HasSubstr("SIZE_BASED_WRAP needs min_num_params"));
  EXPECT_THAT(parse_error("fsdp_config:\n  auto_wrap_policy: NO_WRAP\n"),
              HasSubstr("fsdp_config.auto_wrap_policy must be one of TRANSFORMER_BASED_WRAP, SIZE_BASED_WRAP; got 'NO_WRAP'"));
  EXPECT_THAT(parse_error("fsdp_config:\n  fsdp_backward_prefetch: BACKWARD_SOON\n"),
              HasSubstr("must be one of BACKWARD_PRE, BACKWARD_POST, NO_PREFETCH"));
  EXPECT_THAT(parse_error("fsdp_config:\n  state_dict_type: LOCAL_STATE_DICT\n"),
              HasSubstr("fsdp_config.state_dict_type 'LOCAL_STATE_DICT' is not supported yet"));
  EXPECT_THAT(parse_error("fsdp_config:\n  version: 3\n"), HasSubstr("fsdp_config.version must be 1 or 2, got '3'"));
  EXPECT_THAT(parse_error("fsdp_version: 1\nfsdp_config:\n  fsdp_version: 2\n"),
              HasSubstr("fsdp_version is 1 but fsdp_config.fsdp_version is 2"));
  EXPECT_THAT(parse_error("fsdp_version: 2\n"), HasSubstr("fsdp_version needs fsdp_config"));
  EXPECT_THAT(parse_error("fsdp_config:\n  hybrid_shard_group_size: 2\n"),
              HasSubstr("hybrid_shard_group_size only applies to the HYBRID_SHARD strategy, not FULL_SHARD"));
  EXPECT_THAT(parse_error("fsdp_config:\n  cpu_offload_pin_memory: false\n"), HasSubstr("needs offload_params: true"));
  EXPECT_THAT(parse_error("fsdp_config:\n  offload_parms: true\n"), HasSubstr("did you mean 'offload_params'?"));
  EXPECT_THAT(parse_error("gradient_checkpointing: false\nfsdp_config:\n  activation_checkpointing: true\n"),
              HasSubstr("gradient_checkpointing is false but fsdp_config.activation_checkpointing is true"));
  EXPECT_THAT(parse_error("deepspeed: ds.json\nfsdp: [full_shard]\n"),
              HasSubstr("deepspeed and fsdp are alternatives"));
}

TEST(FsdpConfig, StartupChecksOffloadHybridGroupAndEfficientLoading) {
  EXPECT_THAT(runtime_error("fsdp_config:\n  fsdp_offload_params: true\n", 2),
              AllOf(HasSubstr("fsdp_config.offload_params"),
                    HasSubstr("offload needs the model on a CUDA device; this run is on the CPU")));
  EXPECT_THAT(runtime_error("fsdp: [full_shard, offload]\n", 2), HasSubstr("offload needs the model on a CUDA device"));
  // On a GPU: parameter offload needs sharded parameters.
  TrainConfig offload_on_gpu = parse("fsdp: [full_shard, offload]\n");
  offload_on_gpu.device = DeviceKind::cuda;
  EXPECT_NO_THROW(check_distributed_runtime(offload_on_gpu, {2, 32}));
  TrainConfig grad_op_offload = parse("fsdp: [shard_grad_op, offload]\n");
  grad_op_offload.device = DeviceKind::cuda;
  EXPECT_THAT(error_of([&] { check_distributed_runtime(grad_op_offload, {2, 32}); }),
              AllOf(HasSubstr("fsdp_config.offload_params with sharding_strategy SHARD_GRAD_OP"),
                    HasSubstr("needs FULL_SHARD or HYBRID_SHARD")));
  // hybrid_shard: one node, so by default one shard group of every rank; a given size must divide.
  const TrainConfig hybrid = parse("fsdp: [hybrid_shard]\n");
  EXPECT_EQ(hybrid_shard_group_size(hybrid.fsdp, 4), 4);
  const std::string sized = "fsdp: [hybrid_shard]\nfsdp_config:\n  fsdp_hybrid_shard_group_size: 3\n";
  EXPECT_THAT(runtime_error(sized, 4),
              HasSubstr("fsdp_config.hybrid_shard_group_size 3 does not divide the world size 4"));
  EXPECT_EQ(hybrid_shard_group_size(parse(sized).fsdp, 6), 3);
  EXPECT_NO_THROW(check_distributed_runtime(parse(sized), {6, 32}));
  const std::string efficient = "fsdp_config:\n  cpu_ram_efficient_loading: true\n";
  EXPECT_NO_THROW(check_distributed_runtime(parse(efficient), {2, 32}));
  EXPECT_THAT(runtime_error(efficient + "adapter: lora\nlora_target_linear: true\n", 2),
              HasSubstr("fsdp_config.cpu_ram_efficient_loading with adapter lora: the frozen base weights are not broadcast"));
  EXPECT_THAT(runtime_error(efficient + "  sync_module_states: false\n", 2), HasSubstr("needs sync_module_states true"));
}

TEST(FsdpConfig, ResolvedYamlParsesBackToTheSameSettings) {
  for (const std::string& extra :
       {kFsdp1, std::string("fsdp_version: 2\nfsdp_config:\n  reshard_after_forward: false\n  auto_wrap_policy: "
                            "SIZE_BASED_WRAP\n  min_num_params: 7\n"),
        std::string("fsdp: [hybrid_shard]\nfsdp_config:\n  hybrid_shard_group_size: 2\n  activation_checkpointing: true\n")}) {
    const TrainConfig c = parse(extra);
    const std::string yaml = resolved_config_yaml(c);
    EXPECT_EQ(parse_train_config(yaml, "again.yaml"), c) << yaml;
  }
}

}  // namespace
}  // namespace shardlab::config
