// A train config's DeepSpeed or FSDP block as the engine receives it (tools/cli/data_parallel_options.h):
// Axolotl's ZeRO files and FSDP lists map onto the preset, units and offload the engine runs, and
// the run's header line says so.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/tools/config_test_util.h"
#include "tools/cli/data_parallel_options.h"
#include "tools/config/deepspeed_config.h"

namespace shardlab::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kAxolotl = std::string(SHARDLAB_SOURCE_DIR) + "/tests/tools/deepspeed/";
const std::string kBase =
    "base_model: m\ndatasets:\n  - path: d.jsonl\n    type: completion\nmicro_batch_size: 2\ndevice: cuda\n";

// The options `shardlab train` would build on `world` ranks of a hidden-size-32 model.
dist::DataParallelOptions options_for(const std::string& extra_yaml, int world = 2) {
  const config::TrainConfig cfg = config::parse_train_config(kBase + extra_yaml, "t.yaml");
  return data_parallel_options(cfg, config::check_distributed_runtime(cfg, {world, 32}), world);
}

TEST(DataParallelOptions, DeepSpeedOffloadsReachTheEngine) {
  const dist::DataParallelOptions all = options_for("deepspeed: " + kAxolotl + "axolotl_zero3_bf16_cpuoffload_all.json\n");
  EXPECT_EQ(all.preset, dist::Preset::zero3);
  EXPECT_EQ(all.wrap, dist::WrapPolicy::per_parameter);
  EXPECT_TRUE(all.offload_optimizer);
  EXPECT_TRUE(all.offload_param);
  EXPECT_THAT(describe(all, 2), HasSubstr("parameters offloaded to the CPU"));

  const dist::DataParallelOptions params = options_for("deepspeed: " + kAxolotl + "axolotl_zero3_bf16_cpuoffload_params.json\n");
  EXPECT_FALSE(params.offload_optimizer);
  EXPECT_TRUE(params.offload_param);  // the engine steps the optimizer where the shards are

  const dist::DataParallelOptions zero2 = options_for("deepspeed: " + kAxolotl + "axolotl_zero2.json\n");
  EXPECT_EQ(zero2.preset, dist::Preset::zero2);
  EXPECT_TRUE(zero2.offload_optimizer);
  EXPECT_FALSE(zero2.offload_param);
  EXPECT_THAT(describe(zero2, 2), HasSubstr("optimizer offloaded to the CPU"));

  const dist::DataParallelOptions plain = options_for("deepspeed: " + kAxolotl + "axolotl_zero3_bf16.json\n");
  EXPECT_FALSE(plain.offload_optimizer || plain.offload_param);
  EXPECT_THAT(describe(plain, 2), Not(HasSubstr("offloaded")));
}

TEST(DataParallelOptions, FsdpOffloadIsParameterOffloadOnDecoderLayerUnits) {
  const dist::DataParallelOptions full = options_for("fsdp: [full_shard, auto_wrap, offload]\n", 4);
  EXPECT_EQ(full.preset, dist::Preset::zero3);
  EXPECT_EQ(full.wrap, dist::WrapPolicy::decoder_layer);
  EXPECT_TRUE(full.offload_param);
  const dist::DataParallelOptions hybrid =
      options_for("fsdp: [hybrid_shard, auto_wrap, offload]\nfsdp_config:\n  fsdp_hybrid_shard_group_size: 2\n", 4);
  EXPECT_EQ(hybrid.preset, dist::Preset::hybrid_shard);
  EXPECT_EQ(hybrid.hybrid_shard_group_size, 2);
  EXPECT_TRUE(hybrid.offload_param);
  EXPECT_FALSE(options_for("fsdp: [full_shard, auto_wrap]\n").offload_param);
}

}  // namespace
}  // namespace shardlab::cli
