// DeepSpeed's zero_optimization block and the startup checks: Axolotl's ZeRO-1/2/3 files load with
// the values they write, every knob reaches DistributedSettings, keys without a meaning are errors
// naming the file and key, and at startup train_batch_size must equal micro x accumulation x world
// size, "auto" bucket sizes come from hidden_size, and offload is a clear error on a CPU run (on a
// GPU the optimizer and parameter offloads run; NVMe is an error); ZeRO-3 itself is the
// engine's to accept (dist::preset_from_zero_stage).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "core/error.h"
#include "tests/tools/config_test_util.h"
#include "tools/config/deepspeed_config.h"
#include "tools/config/train_config.h"

namespace shardlab::config {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

const std::string kAxolotl = std::string(SHARDLAB_SOURCE_DIR) + "/tests/tools/deepspeed/";
const std::string kBase =
    "base_model: m\ndatasets:\n  - path: d.jsonl\n    type: completion\nmicro_batch_size: 2\n"
    "gradient_accumulation_steps: 4\n";

std::string write_json(const std::string& text) {
  static int n = 0;
  const fs::path p = fs::temp_directory_path() / ("shardlab_zero_" + std::to_string(::getpid()) + "_" + std::to_string(n++) + ".json");
  std::ofstream(p) << text;
  return p.string();
}

TrainConfig with_ds(const std::string& json_path, const std::string& extra_yaml = "") {
  return parse_train_config(kBase + extra_yaml + "deepspeed: " + json_path + "\n", "t.yaml");
}
TrainConfig with_zero(const std::string& zero_block) {
  return with_ds(write_json(R"({"zero_optimization": )" + zero_block + "}"));
}

std::string zero_error(const std::string& zero_block) {
  return error_of([&] { with_zero(zero_block); });
}
std::string runtime_error(const TrainConfig& c, int64_t world, int64_t hidden = 32) {
  return error_of([&] { check_distributed_runtime(c, {world, hidden}); });
}

TEST(DeepSpeedZero, AxolotlZero1AndZero2LoadWithTheirValues) {
  const TrainConfig z1 = with_ds(kAxolotl + "axolotl_zero1.json");
  EXPECT_EQ(z1.distributed.zero_stage, 1);
  EXPECT_TRUE(z1.distributed.overlap_comm);
  EXPECT_EQ(z1.distributed.reduce_bucket_size, 500'000'000);  // DeepSpeed's default
  EXPECT_EQ(z1.micro_batch_size, 2);                          // "auto" keeps the YAML's
  EXPECT_EQ(z1.gradient_accumulation_steps, 4);
  EXPECT_FALSE(z1.distributed.train_batch_size.has_value());
  EXPECT_EQ(z1.loss_scaler.initial_scale_power, 32);
  EXPECT_EQ(check_distributed_runtime(z1, {4, 32}), z1.distributed);  // nothing "auto" left to resolve

  const TrainConfig z2 = with_ds(kAxolotl + "axolotl_zero2.json");
  EXPECT_EQ(z2.distributed.zero_stage, 2);
  EXPECT_TRUE(z2.distributed.contiguous_gradients);
  EXPECT_TRUE(z2.distributed.overlap_comm);
  EXPECT_EQ(z2.distributed.offload_optimizer.device, OffloadDevice::cpu);
  EXPECT_FALSE(z2.distributed.offload_optimizer.pin_memory);
  // The resolved YAML names the JSON and parses back to the same settings.
  EXPECT_EQ(parse_train_config(resolved_config_yaml(z2), "again.yaml"), z2);
}

TEST(DeepSpeedZero, AxolotlZero3FilesLoadAndOffloadIsAClearError) {
  const TrainConfig z3 = with_ds(kAxolotl + "axolotl_zero3.json");
  const DistributedSettings& d = z3.distributed;
  EXPECT_EQ(d.zero_stage, 3);
  EXPECT_TRUE(d.overlap_comm);
  EXPECT_TRUE(d.contiguous_gradients);
  EXPECT_EQ(d.sub_group_size, 0);
  EXPECT_FALSE(d.reduce_bucket_size.has_value());  // "auto"
  EXPECT_FALSE(d.stage3_prefetch_bucket_size.has_value());
  EXPECT_FALSE(d.stage3_param_persistence_threshold.has_value());
  EXPECT_EQ(d.stage3_max_live_parameters, 0);  // written without the stage3_ prefix, as DeepSpeed allows
  EXPECT_EQ(d.stage3_max_reuse_distance, 0);
  EXPECT_TRUE(d.stage3_gather_16bit_weights_on_model_save);
  // "auto" resolved as Hugging Face does: reduce hidden^2, prefetch 0.9 hidden^2, persistence 10 hidden.
  const DistributedSettings r = check_distributed_runtime(z3, {2, 32});
  EXPECT_EQ(r.reduce_bucket_size, 1024);
  EXPECT_EQ(r.stage3_prefetch_bucket_size, 921);  // 0.9 x 1024 = 921.6, truncated as int() does
  EXPECT_EQ(r.stage3_param_persistence_threshold, 320);

  EXPECT_EQ(with_ds(kAxolotl + "axolotl_zero3_bf16.json").bf16, Toggle::on);
  const TrainConfig all = with_ds(kAxolotl + "axolotl_zero3_bf16_cpuoffload_all.json");
  EXPECT_EQ(all.distributed.offload_optimizer, (OffloadSettings{OffloadDevice::cpu, true}));
  EXPECT_EQ(all.distributed.offload_param, (OffloadSettings{OffloadDevice::cpu, true}));
  const TrainConfig params = with_ds(kAxolotl + "axolotl_zero3_bf16_cpuoffload_params.json");
  EXPECT_EQ(params.distributed.offload_optimizer.device, OffloadDevice::none);
  EXPECT_EQ(params.distributed.offload_param.device, OffloadDevice::cpu);

  // Axolotl's zero2.json offloads the optimizer to the CPU: there is no GPU memory to relieve.
  EXPECT_THAT(runtime_error(with_ds(kAxolotl + "axolotl_zero2.json"), 2),
              AllOf(HasSubstr("axolotl_zero2.json"), HasSubstr("zero_optimization.offload_optimizer.device cpu"),
                    HasSubstr("offload needs the model on a CUDA device; this run is on the CPU")));
  EXPECT_THAT(runtime_error(params, 2), AllOf(HasSubstr("zero_optimization.offload_param.device cpu"),
                                              HasSubstr("offload needs the model on a CUDA device")));
  EXPECT_THAT(runtime_error(with_zero(R"({"stage": 3, "offload_param": {"device": "nvme"}})"), 1),
              HasSubstr("offload_param.device nvme: offload needs the model on a CUDA device"));
  // On a GPU both offloads are what they say (stage 3 for parameters); NVMe is not built.
  TrainConfig on_gpu = with_ds(kAxolotl + "axolotl_zero2.json");
  on_gpu.device = DeviceKind::cuda;
  EXPECT_EQ(check_distributed_runtime(on_gpu, {2, 32}).offload_optimizer.device, OffloadDevice::cpu);
  TrainConfig params_on_gpu = params;
  params_on_gpu.device = DeviceKind::cuda;
  EXPECT_EQ(check_distributed_runtime(params_on_gpu, {2, 32}).offload_param.device, OffloadDevice::cpu);
  TrainConfig param_nvme_on_gpu = with_zero(R"({"stage": 3, "offload_param": {"device": "nvme"}})");
  param_nvme_on_gpu.device = DeviceKind::cuda;
  EXPECT_THAT(runtime_error(param_nvme_on_gpu, 1), HasSubstr("offload_param.device nvme is not supported (cpu is)"));
  TrainConfig nvme_on_gpu = with_zero(R"({"stage": 2, "offload_optimizer": {"device": "nvme"}})");
  nvme_on_gpu.device = DeviceKind::cuda;
  EXPECT_THAT(runtime_error(nvme_on_gpu, 1), HasSubstr("offload_optimizer.device nvme is not supported (cpu is)"));
  // torch.compile has no meaning here.
  EXPECT_THAT(error_of([] { with_ds(kAxolotl + "axolotl_zero1_torch_compile.json"); }),
              AllOf(HasSubstr("axolotl_zero1_torch_compile.json"), HasSubstr("\"compile\" is not supported yet")));
}

TEST(DeepSpeedZero, EveryStageZeroToTwoKnobReachesTheSettings) {
  const DistributedSettings none = parse_train_config(kBase, "t.yaml").distributed;
  EXPECT_EQ(none, DistributedSettings{});
  EXPECT_EQ(none.zero_stage, 0);
  const DistributedSettings d = with_zero(R"({"stage": 2, "overlap_comm": true, "contiguous_gradients": false,
      "reduce_scatter": false, "reduce_bucket_size": 5e5, "allgather_partitions": false, "allgather_bucket_size": 2000,
      "round_robin_gradients": false, "load_from_fp32_weights": true, "ignore_unused_parameters": true,
      "elastic_checkpoint": false})").distributed;
  EXPECT_EQ(d.zero_stage, 2);
  EXPECT_TRUE(d.overlap_comm);
  EXPECT_FALSE(d.contiguous_gradients);
  EXPECT_FALSE(d.reduce_scatter);
  EXPECT_EQ(d.reduce_bucket_size, 500'000);  // 5e5 is an integer written as a float, as DeepSpeed configs do
  EXPECT_FALSE(d.allgather_partitions);
  EXPECT_EQ(d.allgather_bucket_size, 2000);
  // overlap_comm defaults as DeepSpeed's: off for stages 0-2, on for stage 3.
  EXPECT_FALSE(with_zero(R"({"stage": 1})").distributed.overlap_comm);
  EXPECT_TRUE(with_zero(R"({"stage": 3})").distributed.overlap_comm);
  EXPECT_EQ(with_zero(R"({"stage": 0})").distributed, DistributedSettings{});
}

TEST(DeepSpeedZero, KeysWithoutAMeaningAreErrorsNamingFileAndKey) {
  const std::string e = zero_error(R"({"stage": 2, "overlap_com": true})");
  EXPECT_THAT(e, AllOf(HasSubstr("t.yaml"), HasSubstr("shardlab_zero_"),
                       HasSubstr("\"zero_optimization.overlap_com\" is not a known DeepSpeed key")));
  EXPECT_THAT(zero_error(R"({"stage": 4})"), HasSubstr("must be 0, 1, 2 or 3, got 4"));
  EXPECT_THAT(zero_error(R"({"stage": -1})"), HasSubstr("must be 0, 1, 2 or 3"));
  EXPECT_THAT(zero_error(R"({"stage": "2"})"), HasSubstr("zero_optimization.stage\" must be an integer"));
  EXPECT_THAT(zero_error(R"([2])"), HasSubstr("zero_optimization\" must be an object"));
  EXPECT_THAT(zero_error(R"({"stage": 2, "stage3_prefetch_bucket_size": 100})"),
              HasSubstr("\"zero_optimization.stage3_prefetch_bucket_size\" only applies to ZeRO stage 3, but stage is 2"));
  EXPECT_THAT(zero_error(R"({"stage": 1, "max_live_parameters": 100})"), HasSubstr("only applies to ZeRO stage 3"));
  EXPECT_THAT(zero_error(R"({"stage": 2, "offload_param": {"device": "cpu"}})"), HasSubstr("needs ZeRO stage 3"));
  EXPECT_THAT(zero_error(R"({"offload_optimizer": {"device": "cpu"}})"), HasSubstr("needs ZeRO stage 1, 2 or 3"));
  EXPECT_THAT(zero_error(R"({"stage": 2, "offload_optimizer": {"device": "gpu"}})"),
              HasSubstr("offload_optimizer.device\" must be \"none\", \"cpu\" or \"nvme\", got \"gpu\""));
  EXPECT_THAT(zero_error(R"({"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/x"}})"),
              HasSubstr("offload_param.nvme_path\" is not supported yet"));
  EXPECT_THAT(zero_error(R"({"stage": 3, "max_live_parameters": 1, "stage3_max_live_parameters": 2})"),
              HasSubstr("repeats \"zero_optimization.stage3_max_live_parameters\""));
  EXPECT_THAT(zero_error(R"({"stage": 2, "cpu_offload": true})"), HasSubstr("cpu_offload\" is not supported yet"));
  EXPECT_THAT(zero_error(R"({"stage": 3, "zero_quantized_weights": true})"), HasSubstr("is not supported yet"));
  EXPECT_THAT(zero_error(R"({"stage": 2, "reduce_bucket_size": 0})"), HasSubstr("reduce_bucket_size\" must be a positive"));
  EXPECT_THAT(zero_error(R"({"stage": 2, "reduce_bucket_size": -5})"), HasSubstr("non-negative element count"));
  EXPECT_THAT(zero_error(R"({"stage": 2, "reduce_bucket_size": "big"})"), HasSubstr("reduce_bucket_size\" must be an integer"));
  EXPECT_THAT(zero_error(R"({"stage": 2, "reduce_bucket_size": 2.5})"), HasSubstr("non-integer"));
  EXPECT_THAT(zero_error(R"({"stage": 2, "allgather_bucket_size": 0})"), HasSubstr("allgather_bucket_size\" must be a positive"));
  EXPECT_THAT(zero_error(R"({"stage": 2, "contiguous_gradients": "yes"})"), HasSubstr("must be a boolean"));
  EXPECT_THAT(zero_error(R"({"stage": 2, "load_from_fp32_weights": false})"), HasSubstr("must be true"));
  EXPECT_THAT(zero_error(R"({"stage": 2, "ignore_unused_parameters": false})"), HasSubstr("must be true"));
  EXPECT_THAT(zero_error(R"({"stage": 2, "elastic_checkpoint": true})"), HasSubstr("must be false"));
  EXPECT_THAT(zero_error(R"({"stage": 3, "sub_group_size": -1})"), HasSubstr("sub_group_size\" must be >= 0"));
  EXPECT_THAT(runtime_error(with_zero(R"({"stage": 2, "round_robin_gradients": true})"), 2),
              HasSubstr("round_robin_gradients"));
  // Parsed (they have a meaning), but the engine has no such path: an error at startup.
  for (const char* key : {"reduce_scatter", "allgather_partitions", "contiguous_gradients"})
    EXPECT_THAT(runtime_error(with_zero(std::string(R"({"stage": 2, ")") + key + R"(": false})"), 2),
                AllOf(HasSubstr(std::string("zero_optimization.") + key + " false"), HasSubstr("is not supported")));
}

TEST(DeepSpeedZero, TrainBatchSizeMustEqualMicroTimesAccumulationTimesWorldSize) {
  const TrainConfig c = with_ds(write_json(R"({"train_batch_size": 16, "zero_optimization": {"stage": 1}})"));
  EXPECT_EQ(c.distributed.train_batch_size, 16);
  EXPECT_NO_THROW(check_distributed_runtime(c, {2, 32}));  // 2 x 4 x 2
  const std::string e = runtime_error(c, 1);
  EXPECT_THAT(e, AllOf(HasSubstr("shardlab_zero_"), HasSubstr("train_batch_size is 16"),
                       HasSubstr("train_micro_batch_size_per_gpu (micro_batch_size) 2"),
                       HasSubstr("gradient_accumulation_steps 4"), HasSubstr("world size 1"), HasSubstr("= 8")));
  EXPECT_THAT(runtime_error(c, 4), HasSubstr("world size 4 = 32"));
  // The JSON's micro batch and accumulation count too (they fill the YAML's defaults).
  const std::string only_json = write_json(
      R"({"train_batch_size": 24, "train_micro_batch_size_per_gpu": 3, "gradient_accumulation_steps": 2})");
  const TrainConfig j = parse_train_config(
      "base_model: m\ndatasets:\n  - path: d.jsonl\n    type: completion\ndeepspeed: " + only_json + "\n", "t.yaml");
  EXPECT_NO_THROW(check_distributed_runtime(j, {4, 0}));
  EXPECT_THAT(runtime_error(j, 2), HasSubstr("3 x gradient_accumulation_steps 2 x world size 2 = 12"));
  // "auto" (and no key) is whatever the product is.
  EXPECT_NO_THROW(check_distributed_runtime(with_ds(kAxolotl + "axolotl_zero1.json"), {3, 32}));
}

TEST(DeepSpeedZero, AutoBucketSizesResolveFromTheHiddenSizeAtStartup) {
  const TrainConfig c = with_ds(kAxolotl + "zero2_no_offload.json");
  EXPECT_FALSE(c.distributed.reduce_bucket_size.has_value());
  const DistributedSettings d = check_distributed_runtime(c, {2, 48});
  EXPECT_EQ(d.reduce_bucket_size, 48 * 48);
  EXPECT_EQ(d.zero_stage, 2);
  EXPECT_THAT(runtime_error(c, 2, 0), HasSubstr("\"auto\" bucket sizes need the model's hidden_size"));
  EXPECT_THAT(error_of([] { check_distributed_runtime(TrainConfig{}, {0, 32}); }), HasSubstr("world size 0"));
}

// Axolotl's and Hugging Face's ddp_timeout (seconds) sets the collective timeout.
TEST(DeepSpeedZero, DdpTimeoutIsAPositiveNumberOfSeconds) {
  EXPECT_EQ(parse_train_config(kBase, "t.yaml").distributed.ddp_timeout_seconds, 1800);  // HF's default
  const TrainConfig c = parse_train_config(kBase + "ddp_timeout: 90\n", "t.yaml");
  EXPECT_EQ(c.distributed.ddp_timeout_seconds, 90);
  EXPECT_EQ(parse_train_config(resolved_config_yaml(c), "again.yaml"), c);
  EXPECT_THAT(error_of([] { parse_train_config(kBase + "ddp_timeout: 0\n", "t.yaml"); }), HasSubstr("ddp_timeout"));
  EXPECT_THAT(error_of([] { parse_train_config(kBase + "ddp_timeout: soon\n", "t.yaml"); }), HasSubstr("ddp_timeout"));
}

// Hugging Face's ddp_backend: auto (default), nccl or mpi; its other backends are named as not built.
TEST(DeepSpeedZero, DdpBackendIsAutoNcclOrMpi) {
  EXPECT_EQ(parse_train_config(kBase, "t.yaml").distributed.ddp_backend, DdpBackend::automatic);
  for (const auto& [text, want] : {std::pair{"nccl", DdpBackend::nccl}, std::pair{"mpi", DdpBackend::mpi}}) {
    const TrainConfig c = parse_train_config(kBase + "ddp_backend: " + text + "\n", "t.yaml");
    EXPECT_EQ(c.distributed.ddp_backend, want);
    EXPECT_EQ(parse_train_config(resolved_config_yaml(c), "again.yaml"), c);  // the resolved config keeps it
  }
  EXPECT_THAT(error_of([] { parse_train_config(kBase + "ddp_backend: gloo\n", "t.yaml"); }),
              AllOf(HasSubstr("ddp_backend 'gloo' is not supported yet"), HasSubstr("nccl")));
  EXPECT_THAT(error_of([] { parse_train_config(kBase + "ddp_backend: ncl\n", "t.yaml"); }),
              HasSubstr("ddp_backend must be one of"));
}

}  // namespace
}  // namespace shardlab::config
