// `shardlab explain`'s step plan (distributed/step_plan.h) against what really runs, on 2 and 4
// ranks: for every preset the planned buckets (ZeRO-3/hybrid: units) equal the engine's, and the
// planned collectives (kind, calls, payload and ring wire bytes) equal the communication ledger of
// building the engine and of one real Trainer step on a tiny Llama: ddp/zero1/zero2 with overlap on
// and off, f32 and bf16; zero3 with decoder-layer and per-parameter units (with persistent small
// parameters) and with activation checkpointing; hybrid with every group size that divides the world.
#include <gtest/gtest.h>

#include "core/trace.h"
#include "distributed/host_staged_process_group.h"
#include "distributed/step_plan.h"
#include "tests/distributed/mpi_ranks/mpi_test_world.h"
#include "tests/support/emulated_cuda.h"
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
  // On the emulated device, with offload: the planned copies must equal the traced ones too.
  bool offload_optimizer = false;
  bool offload_param = false;
};

// Bytes of the asynchronous offload copies in the trace since start: {up to the device, down to the host}.
std::array<int64_t, 2> traced_offload_copies() {
  std::array<int64_t, 2> bytes{};
  for (const trace::Event& e : trace::snapshot().events) {
    if (e.category != trace::Category::copy || e.name.rfind("async copy to ", 0) != 0) continue;
    const size_t at = e.args.find("\"bytes\":");
    bytes[e.name == "async copy to device" ? 0 : 1] += std::stoll(e.args.substr(at + 8));
  }
  return bytes;
}

void check_case(ProcessGroup& group, const Case& c) {
  const bool offload = c.offload_optimizer || c.offload_param;
  const std::string what = std::string(preset_name(c.preset)) + " " + dtype_name(c.dtype) +
                           (c.overlap ? " overlap" : " no overlap") + " " + wrap_policy_name(c.wrap) + " persistence " +
                           std::to_string(c.persistence) + " group " + std::to_string(c.hybrid_group) +
                           (c.offload_param ? " offload_param" : c.offload_optimizer ? " offload_optimizer" : "");
  models::LlamaForCausalLM model(train::tiny(), 21);
  model.to(c.dtype);
  model.set_gradient_checkpointing(c.checkpointing);
  const Device device = offload ? Device::cuda(0) : Device::cpu();  // offload moves state off a device
  model.to(device);
  std::shared_ptr<ProcessGroup> staged = for_device(std::shared_ptr<ProcessGroup>(&group, [](ProcessGroup*) {}), device);
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
  o.offload_optimizer = c.offload_optimizer;
  o.offload_param = c.offload_param;
  // Planned from the model's names, shapes and modules alone, before the engine touches anything.
  StepPlanInput input{planned_parameters(model.named_parameters()), &model, o, group.size(), c.dtype,
                      OptimizerStateKind::adamw};
  const StepPlan plan = plan_step(input);
  group.ledger().reset();
  DataParallelEngine engine(model, *staged, o);
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
  to.device = device;
  train::RankStream data(1, group.rank(), group.size());
  train::Trainer trainer(model, optimizer, data, to, std::function<double()>{}, train::MixedPrecision{}, &engine);
  group.ledger().reset();
  trace::start();
  trainer.step();
  trace::stop();
  expect_ledger_equals_plan(group.ledger(), plan.step, group.size(), what + " (step)");
  const std::array<int64_t, 2> planned = copy_totals(plan.step), traced = traced_offload_copies();
  EXPECT_EQ(traced[0], planned[0]) << what << ": bytes copied up to the device";
  EXPECT_EQ(traced[1], planned[1]) << what << ": bytes copied down to the host";
  if (offload) EXPECT_GT(planned[0] * planned[1], 0) << what << ": offload copies both ways";
  const ModelStateBytes state = engine.model_state_bytes(optimizer);
  const RankHoldings& held = plan.step.back().after;
  EXPECT_EQ(held.parameter_bytes + held.gradient_bytes + held.optimizer_bytes, static_cast<int64_t>(state.total())) << what;
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

// Offload on the (emulated) device: the planned host<->device copies equal the traced ones, byte for
// byte, besides the collectives; the bucket engine and the sharded units, each offload.
TEST(ExplainRanks, OffloadCopiesPlanEqualsTheTraceOfARealStep) {
  shardlab::testing::use_emulated_cuda();
  for (DType d : {DType::f32, DType::bf16}) {
    check_case(world(), {.preset = Preset::zero2, .dtype = d, .overlap = true, .offload_optimizer = true});
    check_case(world(), {.preset = Preset::ddp, .dtype = d, .overlap = true, .offload_optimizer = true});
    check_case(world(), {.preset = Preset::zero3, .dtype = d, .overlap = true, .offload_optimizer = true});
    check_case(world(), {.preset = Preset::zero3, .dtype = d, .overlap = true, .offload_param = true});
  }
  check_case(world(), {.preset = Preset::zero3, .dtype = DType::bf16, .overlap = true, .wrap = WrapPolicy::per_parameter,
                       .persistence = 20, .offload_param = true});
  shardlab::testing::remove_emulated_cuda();
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
