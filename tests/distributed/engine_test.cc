// The data-parallel engine with world size 1 (LocalProcessGroup): bucket planning, presets and
// their errors, the ZeRO formulas, and every engine check of engine_checks.h (which also run on 2
// and 4 ranks under mpirun in engine_ranks/).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "distributed/local_process_group.h"
#include "tests/distributed/engine_checks.h"

namespace shardlab::dist::testing {
namespace {

using ::testing::HasSubstr;

TEST(EnginePlan, BucketsFillInReverseOrderPadAndShard) {
  // Sizes in registration order; reverse order is 4, 96, 24, 576, 24, 192.
  const std::vector<BucketLayout> b = plan_buckets({192, 24, 576, 24, 96, 4}, 200, 4);
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0].slots.size(), 3u);
  EXPECT_EQ(b[0].slots[0].param, 5);
  EXPECT_EQ(b[0].slots[1].offset, 4);
  EXPECT_EQ(b[0].slots[2].offset, 100);
  EXPECT_EQ(b[0].numel, 124);
  EXPECT_EQ(b[1].numel, 576);  // larger than the bucket size: a bucket of its own
  EXPECT_EQ(b[3].slots[0].param, 0);
  EXPECT_EQ(b[2].numel, 24);
  EXPECT_EQ(b[3].padded_numel, 192);
  const std::vector<BucketLayout> odd = plan_buckets({5, 6}, 100, 4);
  ASSERT_EQ(odd.size(), 1u);
  EXPECT_EQ(odd[0].padded_numel, 12);
  EXPECT_EQ(odd[0].shard_numel, 3);
  EXPECT_EQ(odd[0].shard_offset(3), 9);
}

TEST(EnginePlan, GatherGroupsRespectTheAllGatherSize) {
  const std::vector<BucketLayout> b = plan_buckets({100, 100, 100, 300}, 100, 2);
  const std::vector<BucketRange> g = plan_gather_groups(b, 250, 2);
  ASSERT_EQ(g.size(), 3u);  // {300}, {100, 100}, {100}
  EXPECT_EQ(g[0].first, 0);
  EXPECT_EQ(g[0].last, 1);
  EXPECT_EQ(g[1].last, 3);
  EXPECT_EQ(g[2].first, 3);
}

TEST(EnginePlan, PresetsAliasesAndErrors) {
  EXPECT_EQ(parse_preset("fsdp_no_shard"), Preset::ddp);
  EXPECT_EQ(parse_preset("fsdp_shard_grad_op"), Preset::zero2);
  EXPECT_EQ(ShardingPlan::of(Preset::zero1), (ShardingPlan{true, false, false}));
  EXPECT_EQ(ShardingPlan::of(Preset::zero2), (ShardingPlan{true, true, false}));
  EXPECT_EQ(preset_from_zero_stage(2), Preset::zero2);
  EXPECT_EQ(parse_preset("fsdp_full_shard"), Preset::zero3);
  EXPECT_EQ(parse_preset("fsdp_hybrid_shard"), Preset::hybrid_shard);
  EXPECT_EQ(preset_from_zero_stage(3), Preset::zero3);
  EXPECT_EQ(ShardingPlan::of(Preset::zero3), (ShardingPlan{true, true, true, false}));
  EXPECT_EQ(ShardingPlan::of(Preset::hybrid_shard), (ShardingPlan{true, true, true, true}));
  EXPECT_EQ(parse_backward_prefetch("BACKWARD_POST"), BackwardPrefetch::backward_post);
  EXPECT_THAT([] { parse_wrap_policy("layer"); }, ::testing::ThrowsMessage<Error>(HasSubstr("'layer'")));
  EXPECT_THAT([] { parse_preset("zero4"); }, ::testing::ThrowsMessage<Error>(HasSubstr("'zero4'")));
  DataParallelOptions o;
  o.contiguous_gradients = false;
  EXPECT_THAT([&] { validate(o); }, ::testing::ThrowsMessage<Error>(HasSubstr("contiguous_gradients")));
}

TEST(EngineTheory, ZeroPaperFigures) {
  // The paper's example: psi = 7.5B, N = 64, mixed-precision Adam: 120 GB, 31.4 GB, 16.6 GB.
  const int64_t psi = 7'500'000'000;
  const double k = optimizer_bytes_per_param(OptimizerStateKind::adamw, true);
  EXPECT_EQ(k, 12);
  EXPECT_NEAR(zero_model_state_theory(Preset::ddp, psi, 64, DType::bf16, DType::bf16, k).total() / 1e9, 120, 1e-9);
  EXPECT_NEAR(zero_model_state_theory(Preset::zero1, psi, 64, DType::bf16, DType::bf16, k).total() / 1e9, 31.40625, 1e-9);
  EXPECT_NEAR(zero_model_state_theory(Preset::zero2, psi, 64, DType::bf16, DType::bf16, k).total() / 1e9, 16.640625, 1e-9);
  // f32 without masters: 4 + 4 + 8 = 16, 8 + 8/N, 4 + 12/N.
  EXPECT_EQ(zero_model_state_theory(Preset::zero1, 100, 4, DType::f32, DType::f32, 8).total(), 1000);
  EXPECT_EQ(zero_model_state_theory(Preset::zero2, 100, 4, DType::f32, DType::f32, 8).total(), 700);
  EXPECT_EQ(zero_step_traffic_elements(Preset::zero2, 10), 20);
  EXPECT_EQ(ring_wire_elements(20, 4), 15);
}

TEST(EngineLocal, ParityWithOneProcess) {
  for (Preset p : {Preset::ddp, Preset::zero1, Preset::zero2}) {
    LocalProcessGroup g;
    RunConfig c;
    c.preset = p;
    check_parity(g, c);
  }
}

TEST(EngineLocal, ParityBf16WithMasters) {
  for (Preset p : {Preset::ddp, Preset::zero2}) {
    LocalProcessGroup g;
    RunConfig c;
    c.preset = p;
    c.dtype = DType::bf16;
    check_parity(g, c);
  }
}

TEST(EngineLocal, Bf16ReducedInF32KeepsF32GradientBuckets) {
  LocalProcessGroup g;
  RunConfig c;
  c.preset = Preset::zero1;
  c.dtype = DType::bf16;
  c.reduce_dtype = DType::f32;
  check_parity(g, c);
  EngineRun run(g, c);
  EXPECT_EQ(run.engine().reduce_dtype(), DType::f32);
  run.step(0);
  // bf16 parameters (2 B), f32 gradients (4 B), masters + AdamW (12 B): 2 + 4 + 12 / N.
  EXPECT_EQ(run.engine().model_state_bytes(run.optimizer()).total(), 891 * 18.0);
  EXPECT_EQ(run.engine().model_state_theory(OptimizerStateKind::adamw).total(), 891 * 18.0);
}

TEST(EngineLocal, ModelStateMatchesTheZeroPaper) {
  for (Preset p : {Preset::ddp, Preset::zero1, Preset::zero2})
    for (DType d : {DType::f32, DType::bf16}) {
      LocalProcessGroup g;
      check_model_state(g, p, d);
    }
}

TEST(EngineLocal, TrafficIsTwoPsiAndNoneBeforeTheFinalMicroBatch) {
  for (Preset p : {Preset::ddp, Preset::zero1, Preset::zero2}) {
    LocalProcessGroup g;
    check_comm_ledger(g, p, DType::f32);
  }
}

TEST(EngineLocal, FirstBucketIssuedBeforeBackwardEnds) {
  LocalProcessGroup g;
  check_overlap(g, true);
  LocalProcessGroup h;
  check_overlap(h, false);
}

TEST(EngineLocal, FrozenParametersAreLeftAlone) {
  for (Preset p : {Preset::ddp, Preset::zero2}) {
    LocalProcessGroup g;
    check_frozen(g, p);
  }
}

TEST(EngineLocal, Fp16OverflowSkipsTheStep) {
  LocalProcessGroup g;
  check_overflow_skips_everywhere(g, Preset::zero2);
}

TEST(EngineLocal, ObserversChangeNothing) {
  LocalProcessGroup g;
  check_observers_change_nothing(g, Preset::zero1);
}

// ZeRO-2 frees each full-size bucket buffer once its reduce-scatter completed, while backward still
// runs. With one rank every collective is complete on return, so each buffer is gone as soon as its
// bucket is issued and none is live at the end of backward.
TEST(EngineLocal, Zero2FreesBucketBuffersDuringBackward) {
  LocalProcessGroup g;
  RunConfig c;
  c.preset = Preset::zero2;
  c.record_events = true;
  EngineRun run(g, c);
  const int64_t comm_before = MemoryLedger::instance().snapshot(Device::cpu())[MemTag::communication].live;
  int64_t comm_at_end = -1;
  run.step(0, {.after_backward = [&](int micro) {
                 if (micro == c.accumulation - 1)
                   comm_at_end = MemoryLedger::instance().snapshot(Device::cpu())[MemTag::communication].live;
               },
               .after_reduction = {}});
  EXPECT_EQ(comm_at_end, comm_before);
  size_t first_reduced = 0, last_ready = 0;
  const std::vector<EngineEvent>& ev = run.engine().events();
  for (size_t i = ev.size(); i-- > 0;)
    if (ev[i].kind == EngineEvent::bucket_reduced) first_reduced = i;
  for (size_t i = 0; i < ev.size(); ++i)
    if (ev[i].kind == EngineEvent::grad_ready) last_ready = i;
  EXPECT_LT(first_reduced, last_ready);
}

TEST(EngineLocal, BadInputsAreNamed) {
  LocalProcessGroup g;
  Tensor frozen = Tensor::zeros({3});
  EXPECT_THAT([&] { DataParallelEngine e({frozen}, g, {}); },
              ::testing::ThrowsMessage<Error>(HasSubstr("no trainable parameters")));
  Tensor a = Tensor::zeros({3}, DType::f32);
  a.set_requires_grad(true);
  Tensor b = Tensor::zeros({3}, DType::bf16);
  b.set_requires_grad(true);
  EXPECT_THAT([&] { DataParallelEngine e({a, b}, g, {}); }, ::testing::ThrowsMessage<Error>(HasSubstr("one dtype")));
  DataParallelOptions o;
  o.reduce_dtype = DType::bf16;
  Tensor c = Tensor::zeros({3}, DType::f32);
  c.set_requires_grad(true);
  EXPECT_THAT([&] { DataParallelEngine e({c}, g, o); }, ::testing::ThrowsMessage<Error>(HasSubstr("reduce dtype bf16")));
}

}  // namespace
}  // namespace shardlab::dist::testing
