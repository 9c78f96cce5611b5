// `shardlab explain`'s step plan (distributed/step_plan.h) against what really runs, on 2 and 4
// ranks: for every preset the planned buckets (ZeRO-3/hybrid: units) equal the engine's, and the
// planned collectives (kind, calls, payload and ring wire bytes) equal the communication ledger of
// building the engine and of one real Trainer step on a tiny Llama: ddp/zero1/zero2 with overlap on
// and off, f32 and bf16; zero3 with decoder-layer and per-parameter units (with persistent small
// parameters) and with activation checkpointing; hybrid with every group size that divides the world.
#include <gtest/gtest.h>

#include "distributed/step_plan.h"
#include "tests/distributed/mpi_ranks/mpi_test_world.h"
#include "tests/trainer/data_parallel_fixtures.h"

namespace shardlab::dist::testing {
namespace {

// The ledger's figures for one kind, next to the plan's, with the kind's name for messages.
void expect_ledger_equals_plan(const CommLedger& ledger, const std::vector<StepPhase>& phases, int world,
                               const std::string& what) {
  const std::array<CollectiveTotals, 5> planned = collective_totals(phases);
  for (int k = 0; k < 5; ++k) {
    const auto kind = static_cast<CollectiveKind>(k);
    const CollectiveStats real = ledger.stats(kind);
    int64_t wire = 0;
    for (const StepPhase& p : phases)
      for (const PlannedCollective& c : p.collectives)
        if (c.kind == kind) wire += c.wire_bytes;
    EXPECT_EQ(real.calls, planned[k].calls) << what << ": " << collective_name(kind) << " calls on " << world << " ranks";
    EXPECT_EQ(real.payload_bytes, planned[k].payload_bytes) << what << ": " << collective_name(kind) << " payload bytes";
    EXPECT_EQ(real.wire_bytes, wire) << what << ": " << collective_name(kind) << " wire bytes";
  }
}

struct Case {
  Preset preset;
  DType dtype;
  bool overlap;
  WrapPolicy wrap = WrapPolicy::decoder_layer;
  int64_t persistence = 0;
  int hybrid_group = 0;
  bool checkpointing = false;
};

void check_case(ProcessGroup& group, const Case& c) {
  const std::string what = std::string(preset_name(c.preset)) + " " + dtype_name(c.dtype) +
                           (c.overlap ? " overlap" : " no overlap") + " " + wrap_policy_name(c.wrap) + " persistence " +
                           std::to_string(c.persistence) + " group " + std::to_string(c.hybrid_group);
  models::LlamaForCausalLM model(train::tiny(), 21);
  model.to(c.dtype);
  model.set_gradient_checkpointing(c.checkpointing);
  DataParallelOptions o;
  o.preset = c.preset;
  o.reduce_bucket_size = 600;     // several buckets for the ~3.6k-parameter model
  o.allgather_bucket_size = 1500; // and several all-gathers of updated shards
  o.overlap_comm = c.overlap;
  o.wrap = c.wrap;
  o.param_persistence_threshold = c.persistence;
  o.hybrid_shard_group_size = c.hybrid_group;
  o.prefetch_bucket_size = 800;
  o.reduce_dtype = c.dtype;
  // Planned from the model's names, shapes and modules alone, before the engine touches anything.
  StepPlanInput input{planned_parameters(model.named_parameters()), &model, o, group.size(), c.dtype,
                      OptimizerStateKind::adamw};
  const StepPlan plan = plan_step(input);
  group.ledger().reset();
  DataParallelEngine engine(model, group, o);
  nn::AdamW optimizer(engine.optimizer_params(), 1e-3);
  expect_ledger_equals_plan(group.ledger(), plan.setup, group.size(), what + " (build)");
  ASSERT_EQ(engine.buckets().size(), plan.buckets.size()) << what;
  for (size_t b = 0; b < plan.buckets.size(); ++b) {
    EXPECT_EQ(engine.buckets()[b].padded_numel, plan.buckets[b].padded_numel) << what << " bucket " << b;
    EXPECT_EQ(engine.buckets()[b].slots.size(), plan.buckets[b].slots.size()) << what << " bucket " << b;
    for (size_t s = 0; s < plan.buckets[b].slots.size(); ++s)
      EXPECT_EQ(engine.buckets()[b].slots[s].param, plan.buckets[b].slots[s].param) << what << " bucket " << b;
  }
  if (const ShardedUnits* units = engine.sharded_units())
    for (size_t u = 0; u < plan.units.size(); ++u) EXPECT_EQ(units->unit_names()[u], plan.units[u].name) << what;
  EXPECT_EQ(engine.trained_numel(), plan.psi) << what;

  train::TrainerOptions to = train::dp_options(1);
  to.gradient_accumulation_steps = 1;  // the plan is of one micro batch per rank
  train::RankStream data(1, group.rank(), group.size());
  train::Trainer trainer(model, optimizer, data, to, std::function<double()>{}, train::MixedPrecision{}, &engine);
  group.ledger().reset();
  trainer.step();
  expect_ledger_equals_plan(group.ledger(), plan.step, group.size(), what + " (step)");
}

TEST(ExplainRanks, StepPlanEqualsTheLedgerOfARealStep) {
  for (Preset p : {Preset::ddp, Preset::zero1, Preset::zero2})
    for (DType d : {DType::f32, DType::bf16})
      for (bool overlap : {true, false}) check_case(world(), {p, d, overlap});
}

TEST(ExplainRanks, ShardedUnitsPlanEqualsTheLedgerOfARealStep) {
  for (DType d : {DType::f32, DType::bf16}) {
    check_case(world(), {Preset::zero3, d, true});
    check_case(world(), {Preset::zero3, d, true, WrapPolicy::per_parameter, 20});  // norms (16) stay whole
  }
  check_case(world(), {Preset::zero3, DType::f32, true, WrapPolicy::decoder_layer, 0, 0, true});
  for (int g = 1; g <= world().size(); ++g)
    if (world().size() % g == 0) check_case(world(), {Preset::hybrid_shard, DType::f32, true, WrapPolicy::decoder_layer, 0, g});
}

// The plan is not vacuous: on 2+ ranks it has the bucket collectives and the host scalars.
TEST(ExplainRanks, PlanListsEveryBucketCollective) {
  models::LlamaForCausalLM model(train::tiny(), 21);
  DataParallelOptions o;
  o.preset = Preset::zero2;
  o.reduce_bucket_size = 600;
  const StepPlan plan = plan_step({planned_parameters(model.named_parameters()), nullptr, o, world().size(), DType::f32,
                                   OptimizerStateKind::adamw});
  const auto t = collective_totals(plan.step);
  EXPECT_GT(plan.buckets.size(), 2u);
  EXPECT_EQ(t[static_cast<int>(CollectiveKind::reduce_scatter)].calls, static_cast<int64_t>(plan.buckets.size()));
  // token counts, loss, overflow flag, squared-norm sum
  EXPECT_EQ(t[static_cast<int>(CollectiveKind::all_reduce)].calls, 4);
  EXPECT_EQ(t[static_cast<int>(CollectiveKind::all_reduce)].payload_bytes, 16 + 8 + 8 + 8);
}

}  // namespace
}  // namespace shardlab::dist::testing
