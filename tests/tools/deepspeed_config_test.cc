// `deepspeed: ds.json` merged into the YAML config: Axolotl's stage-0 file loads ("auto" keeps the
// YAML's values), the fp16 block's loss-scaler knobs arrive, numbers must agree with the YAML, and
// unknown keys, unsupported blocks and non-files are errors naming the file and key. (ZeRO's
// zero_optimization block and the startup checks: deepspeed_zero_test.cc.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "core/error.h"
#include "tools/config/train_config.h"

namespace shardlab::config {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string kData = std::string(SHARDLAB_SOURCE_DIR) + "/tests/data/deepspeed/";
const std::string kBase =
    "base_model: m\ndatasets:\n  - path: d.jsonl\n    type: completion\nmicro_batch_size: 2\n"
    "gradient_accumulation_steps: 4\n";

std::string write_json(const std::string& text) {
  static int n = 0;
  const fs::path p = fs::temp_directory_path() / ("shardlab_ds_" + std::to_string(::getpid()) + "_" + std::to_string(n++) + ".json");
  std::ofstream(p) << text;
  return p.string();
}

std::string error_of(const std::string& yaml) {
  try {
    parse_train_config(yaml, "t.yaml");
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(DeepSpeedConfig, AxolotlStageZeroFileLoadsAndAutoKeepsTheYaml) {
  TrainConfig c = parse_train_config(kBase + "fp16: true\ndeepspeed: " + kData + "zero0.json\n", "t.yaml");
  EXPECT_EQ(c.fp16, Toggle::on);
  EXPECT_EQ(c.micro_batch_size, 2);
  EXPECT_EQ(c.gradient_accumulation_steps, 4);
  EXPECT_EQ(c.loss_scaler.initial_scale_power, 32);  // from the fp16 block
  EXPECT_EQ(c.loss_scaler.hysteresis, 2);
  // The resolved YAML names the JSON and parses back to the same config.
  EXPECT_EQ(parse_train_config(resolved_config_yaml(c), "again.yaml"), c);
}

TEST(DeepSpeedConfig, NumbersFillDefaultsButMustAgreeWithExplicitYaml) {
  const std::string ds = write_json(R"({"fp16": {"enabled": true, "hysteresis": 1}, "gradient_clipping": 0.5,
      "train_micro_batch_size_per_gpu": 2, "train_batch_size": 8})");
  TrainConfig c = parse_train_config(kBase + "deepspeed: " + ds + "\n", "t.yaml");
  EXPECT_EQ(c.fp16, Toggle::on);
  EXPECT_EQ(c.loss_scaler.hysteresis, 1);
  EXPECT_DOUBLE_EQ(c.max_grad_norm, 0.5);
  const std::string comm = write_json(R"({"bf16": {"enabled": true}, "communication_data_type": "fp32"})");
  EXPECT_EQ(parse_train_config(kBase + "deepspeed: " + comm + "\n", "t.yaml").communication_data_type, "fp32");
  EXPECT_THAT(error_of(kBase + "deepspeed: " + write_json(R"({"communication_data_type": "int8"})") + "\n"),
              HasSubstr("communication_data_type"));
  EXPECT_THAT(error_of(kBase + "fp16: false\ndeepspeed: " + ds + "\n"), HasSubstr("contradicts the YAML's fp16"));
  EXPECT_THAT(error_of(kBase + "max_grad_norm: 1.0\ndeepspeed: " + ds + "\n"), HasSubstr("gradient_clipping"));
  // train_batch_size needs the world size: kept at parse time, checked at startup.
  const std::string batch = write_json(R"({"train_batch_size": 16})");
  EXPECT_EQ(parse_train_config(kBase + "deepspeed: " + batch + "\n", "t.yaml").distributed.train_batch_size, 16);
  EXPECT_THAT(error_of(kBase + "deepspeed: " + write_json(R"({"train_batch_size": 0})") + "\n"),
              HasSubstr("train_batch_size\" must be a positive integer"));
  const std::string bad_accum = write_json(R"({"gradient_accumulation_steps": 3})");
  std::string e = error_of(kBase + "deepspeed: " + bad_accum + "\n");
  EXPECT_THAT(e, HasSubstr(bad_accum));
  EXPECT_THAT(e, HasSubstr("gradient_accumulation_steps is 4"));
}

TEST(DeepSpeedConfig, UnknownKeysUnsupportedBlocksAndNonFilesAreNamed) {
  const std::string typo = write_json(R"({"fp16": {"enabeld": true}})");
  std::string e = error_of(kBase + "deepspeed: " + typo + "\n");
  EXPECT_THAT(e, HasSubstr("fp16.enabeld"));
  EXPECT_THAT(e, HasSubstr("t.yaml"));
  EXPECT_THAT(error_of(kBase + "deepspeed: " + write_json(R"({"optimizer": {}})") + "\n"),
              HasSubstr("is not supported yet"));
  EXPECT_THAT(error_of(kBase + "deepspeed: " + write_json(R"({"compile": {"disable": false}})") + "\n"),
              HasSubstr("\"compile\" is not supported yet"));
  EXPECT_THAT(error_of(kBase + "deepspeed: " + write_json(R"({"steps_per_print": "often"})") + "\n"),
              HasSubstr("steps_per_print"));
  EXPECT_THAT(error_of(kBase + "deepspeed: /dev/zero\n"), HasSubstr("not a readable file"));
  EXPECT_THAT(error_of(kBase + "deepspeed: " + write_json("{\"fp16\": ") + "\n"), HasSubstr(".json:1:"));
  EXPECT_THAT(error_of(kBase + "deepspeed: " + write_json(R"({"fp16": {"enabled": true}, "bf16": {"enabled": true}})") + "\n"),
              HasSubstr("both fp16 and bf16"));
}

}  // namespace
}  // namespace shardlab::config
