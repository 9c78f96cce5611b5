// Parity under mpirun (1, 2 and 4 ranks): ddp, zero1, zero2, zero3 and hybrid x full fine-tuning and LoRA x
// gradient accumulation 1 and 2 give the single-process losses and parameters on the same global
// batch within the stated tolerance (parity_harness.h), and the harness reports an injected fault
// by step, tensor and rank.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <tuple>

#include "distributed/init.h"
#include "tests/distributed/parity/parity_harness.h"
#include "tests/support/emulated_cuda.h"

namespace shardlab::parity {
namespace {

dist::ProcessGroup& world() {
  static std::shared_ptr<dist::ProcessGroup> group = dist::init_process_group();
  return *group;
}

// Rank 0 prints each case's figures: the evidence that the tolerance holds, in the ctest log.
void print(const std::string& name, const ParityReport& r) {
  if (world().rank() == 0) std::printf("[parity] %s on %d ranks: %s\n", name.c_str(), world().size(), r.describe().c_str());
}

using Case = std::tuple<dist::Preset, bool, int64_t>;  // preset, lora, accumulation

class Parity : public ::testing::TestWithParam<Case> {};

TEST_P(Parity, MatchesSingleProcessOnTheGlobalBatch) {
  ParityCase c;
  std::tie(c.preset, c.lora, c.gradient_accumulation_steps) = GetParam();
  const ParityReport r = run_parity(world(), c);
  print(case_name(c), r);
  EXPECT_FALSE(r.first.has_value()) << case_name(c) << ": " << r.first->message();
  EXPECT_LE(r.max_loss_diff, kLossTolerance);
  EXPECT_LE(r.max_grad_norm_diff, kGradNormTolerance);
  EXPECT_LE(r.max_param_diff, kParameterTolerance);
  ASSERT_EQ(r.losses.size(), static_cast<size_t>(c.steps));
  // It trains (a comparison of two frozen runs would prove nothing): parameters moved by ~lr per
  // step, far beyond the tolerance. (The loss is of a different batch each step: not monotone.)
  EXPECT_GT(r.max_param_change, 20 * kParameterTolerance) << case_name(c);
  EXPECT_GT(r.trained_parameters, 0);
}

INSTANTIATE_TEST_SUITE_P(
    PresetsModesAccumulation, Parity,
    ::testing::Combine(::testing::Values(dist::Preset::ddp, dist::Preset::zero1, dist::Preset::zero2),
                       ::testing::Bool(), ::testing::Values(int64_t{1}, int64_t{2})),
    [](const ::testing::TestParamInfo<Case>& info) {
      return std::string(dist::preset_name(std::get<0>(info.param))) + (std::get<1>(info.param) ? "_lora" : "_full") +
             "_accum" + std::to_string(std::get<2>(info.param));
    });

// ZeRO-3 (the fsdp_full_shard alias is the same preset) and hybrid sharding: full fine-tuning and
// LoRA (frozen base weights in every unit stay replicated), with and without accumulation.
INSTANTIATE_TEST_SUITE_P(
    ShardedParameters, Parity,
    ::testing::Combine(::testing::Values(dist::parse_preset("fsdp_full_shard"), dist::Preset::hybrid_shard),
                       ::testing::Bool(), ::testing::Values(int64_t{1}, int64_t{2})),
    [](const ::testing::TestParamInfo<Case>& info) {
      return std::string(std::get<0>(info.param) == dist::Preset::zero3 ? "zero3" : "hybrid") +
             (std::get<1>(info.param) ? "_lora" : "_full") + "_accum" + std::to_string(std::get<2>(info.param));
    });

void expect_parity(const ParityCase& c) {
  const ParityReport r = run_parity(world(), c);
  print(case_name(c), r);
  EXPECT_FALSE(r.first.has_value()) << case_name(c) << ": " << r.first->message();
  EXPECT_GT(r.max_param_change, 20 * kParameterTolerance) << case_name(c);
}

// A checkpointed layer's recompute in backward gathers its parameters again.
TEST(ParityZero3, GradientCheckpointingWithAccumulation) {
  ParityCase c;
  c.preset = dist::Preset::zero3;
  c.checkpointing = true;
  c.gradient_accumulation_steps = 2;
  c.steps = 3;
  expect_parity(c);
}

// ZeRO-3's per-parameter fetching with a persistence threshold (the norms stay gathered) and a
// small prefetch bucket.
TEST(ParityZero3, PerParameterUnitsWithPersistentSmallParameters) {
  ParityCase c;
  c.preset = dist::Preset::zero3;
  c.wrap = dist::WrapPolicy::per_parameter;
  c.param_persistence_threshold = 100;
  c.prefetch_bucket_size = 1000;
  c.steps = 3;
  expect_parity(c);
}

// Hybrid on every mesh shape the world allows: shard groups of 1 (pure replication) up to the world.
TEST(ParityHybrid, EveryShardGroupSize) {
  for (int g = 1; g <= world().size(); g *= 2) {
    ParityCase c;
    c.preset = dist::Preset::hybrid_shard;
    c.hybrid_shard_group_size = g;
    c.steps = 2;
    c.checkpointing = g == 2;
    expect_parity(c);
  }
}

// The engine on device tensors (the emulated CUDA device: host memory, CPU kernels, mixed devices
// rejected, asynchronous copies that land only at wait()) with host-staged collectives: every step
// matches the CPU reference within the same tolerances (the kernels are the CPU's, so only the
// summation order differs, as on the CPU), and the state lives where the case puts it.
void expect_device_parity(const ParityCase& c) {
  const ParityReport r = run_parity(world(), c);
  print(case_name(c) + " on cuda:0 (emulated)", r);
  EXPECT_FALSE(r.first.has_value()) << case_name(c) << ": " << r.first->message();
  EXPECT_TRUE(r.state_where_expected) << case_name(c) << ": parameters, shards and optimizer state not where expected";
  EXPECT_GT(r.max_param_change, 20 * kParameterTolerance) << case_name(c);
}

ParityCase on_device(dist::Preset preset) {
  ParityCase c;
  c.preset = preset;
  c.device = Device::cuda(0);
  return c;
}

TEST(ParityOnDevice, DdpZero1Zero2WithHostStagedCollectives) {
  testing::use_emulated_cuda();
  for (dist::Preset preset : {dist::Preset::ddp, dist::Preset::zero1, dist::Preset::zero2}) {
    ParityCase c = on_device(preset);
    c.gradient_accumulation_steps = 2;
    expect_device_parity(c);
  }
  testing::remove_emulated_cuda();
}

// ZeRO-Offload: the same runs with the fp32 masters and AdamW's state on the host (the optimizer
// steps f32 masters of f32 parameters there, which is the same arithmetic as stepping them in place).
TEST(ParityOnDevice, OffloadedOptimizerMatchesTheReference) {
  testing::use_emulated_cuda();
  for (dist::Preset preset : {dist::Preset::ddp, dist::Preset::zero1, dist::Preset::zero2}) {
    ParityCase c = on_device(preset);
    c.offload_optimizer = true;
    expect_device_parity(c);
  }
  testing::remove_emulated_cuda();
}

// ZeRO-3 and hybrid sharding on the device: gathered unit buffers are device storage released and
// re-acquired in place; with LoRA (frozen bases replicated in every unit) and with a checkpointed
// recompute that gathers again in backward.
TEST(ParityOnDevice, Zero3AndHybridGatherIntoDeviceBuffers) {
  testing::use_emulated_cuda();
  for (dist::Preset preset : {dist::Preset::zero3, dist::Preset::hybrid_shard})
    for (bool lora : {false, true}) {
      ParityCase c = on_device(preset);
      c.lora = lora;
      c.gradient_accumulation_steps = 2;
      c.checkpointing = !lora;
      c.steps = 3;
      expect_device_parity(c);
    }
  testing::remove_emulated_cuda();
}

// ZeRO-3 with the optimizer offloaded (f32 masters on the host) and with the parameters offloaded
// (shards and gradient shards on the host, uploaded per unit for its gather).
TEST(ParityOnDevice, Zero3WithOptimizerOrParametersOffloaded) {
  testing::use_emulated_cuda();
  for (dist::Preset preset : {dist::Preset::zero3, dist::Preset::hybrid_shard})
    for (bool params : {false, true}) {
      ParityCase c = on_device(preset);
      c.offload_optimizer = !params;
      c.offload_param = params;
      c.gradient_accumulation_steps = 2;
      c.steps = 3;
      expect_device_parity(c);
    }
  testing::remove_emulated_cuda();
}

// The harness must be able to fail: a fault on the last rank after step 2's update is reported at
// step 2, naming that tensor and that rank (later steps diverge everywhere; the first is what counts).
TEST(ParityHarness, NamesTheStepTensorAndRankOfAnInjectedFault) {
  ParityCase c;
  c.preset = dist::Preset::zero2;
  c.steps = 3;
  c.inject = Injection{2, "model.layers.1.mlp.down_proj.weight", world().size() - 1, 1e-3f};
  const ParityReport r = run_parity(world(), c);
  print("zero2/full/accum1 with a fault", r);
  ASSERT_TRUE(r.first.has_value());
  EXPECT_EQ(r.first->step, 2);
  EXPECT_EQ(r.first->tensor, "model.layers.1.mlp.down_proj.weight");
  EXPECT_EQ(r.first->rank, world().size() - 1);
  EXPECT_NEAR(r.first->max_abs_diff, 1e-3, 1e-4);
  EXPECT_EQ(r.first->message().rfind("first divergence at step 2, tensor model.layers.1.mlp.down_proj.weight: max abs diff", 0), 0u)
      << r.first->message();
}

// The same for an adapter tensor under LoRA, at the first step: the loss of step 2 then differs too,
// but the parameter of step 1 comes first.
TEST(ParityHarness, NamesALoraTensorAtStepOne) {
  ParityCase c;
  c.preset = dist::Preset::ddp;
  c.lora = true;
  c.steps = 2;
  c.inject = Injection{1, "model.layers.0.self_attn.v_proj.lora_B.weight", 0, 1e-2f};
  const ParityReport r = run_parity(world(), c);
  print("ddp/lora/accum1 with a fault", r);
  ASSERT_TRUE(r.first.has_value());
  EXPECT_EQ(r.first->step, 1);
  EXPECT_EQ(r.first->tensor, "model.layers.0.self_attn.v_proj.lora_B.weight");
  EXPECT_EQ(r.first->rank, 0);
}

}  // namespace
}  // namespace shardlab::parity
