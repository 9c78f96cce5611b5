// The data-parallel engine on 2 and 4 ranks (run under mpirun by ctest): parity with a
// single-process reference computed in every rank, model-state and traffic ledgers against the
// ZeRO paper, overlap, no communication before the final micro batch, frozen parameters, a global
// fp16 skip, and the Trainer's parity and exact resume.
#include <gtest/gtest.h>

#include "tests/distributed/engine_checks.h"
#include "tests/distributed/mpi_ranks/mpi_test_world.h"
#include "tests/trainer/data_parallel_fixtures.h"

namespace shardlab::dist::testing {
namespace {

constexpr Preset kPresets[] = {Preset::ddp, Preset::zero1, Preset::zero2};

TEST(EngineRanks, ParityWithOneProcessOnTheGlobalBatch) {
  for (Preset p : kPresets) {
    RunConfig c;
    c.preset = p;
    check_parity(world(), c);
  }
}

// AdamW and clipping are blind to the gradients' scale; unclipped SGD is not (a mean instead of a
// sum over ranks would halve its update), so bf16 runs both.
TEST(EngineRanks, ParityBf16WithShardedMasters) {
  for (Preset p : kPresets)
    for (OptimizerStateKind opt : {OptimizerStateKind::adamw, OptimizerStateKind::sgd_momentum}) {
      RunConfig c;
      c.preset = p;
      c.dtype = DType::bf16;
      c.optimizer = opt;
      if (opt == OptimizerStateKind::sgd_momentum) c.max_grad_norm = 0;
      check_parity(world(), c);
    }
}

TEST(EngineRanks, ParityBf16ReducedInF32) {
  for (Preset p : kPresets) {
    RunConfig c;
    c.preset = p;
    c.dtype = DType::bf16;
    c.reduce_dtype = DType::f32;
    check_parity(world(), c);
  }
}

TEST(EngineRanks, ParityWithSgdMomentumAndAllGatherGroups) {
  RunConfig c;
  c.preset = Preset::zero2;
  c.optimizer = OptimizerStateKind::sgd_momentum;
  c.max_grad_norm = 0;  // unclipped: the update's size depends on the gradients' scale
  c.bucket_size = 50;   // many buckets, several per all-gather
  check_parity(world(), c);
}

TEST(EngineRanks, ModelStateMatchesTheZeroPaper) {
  for (Preset p : kPresets)
    for (DType d : {DType::f32, DType::bf16}) check_model_state(world(), p, d);
}

TEST(EngineRanks, TrafficIsTwoPsiAndNoneBeforeTheFinalMicroBatch) {
  for (Preset p : kPresets)
    for (DType d : {DType::f32, DType::bf16}) check_comm_ledger(world(), p, d);
}

TEST(EngineRanks, FirstBucketIssuedBeforeBackwardEnds) {
  check_overlap(world(), true);
  check_overlap(world(), false);
}

TEST(EngineRanks, FrozenParametersAreLeftAlone) {
  for (Preset p : kPresets) check_frozen(world(), p);
}

TEST(EngineRanks, Fp16OverflowOnOneRankSkipsEverywhere) {
  for (Preset p : kPresets) check_overflow_skips_everywhere(world(), p);
}

TEST(EngineRanks, ObserversChangeNothing) {
  for (Preset p : kPresets) check_observers_change_nothing(world(), p);
}

TEST(EngineRanks, InitialParametersComeFromRankZero) {
  RunConfig c;
  Mlp m(c);
  // Perturb every rank but 0 differently; the engine's broadcast must undo it.
  if (world().rank() != 0) ops::fill_(m.l2.named_parameters()[0].second, static_cast<double>(world().rank()));
  DataParallelOptions o;
  DataParallelEngine e(m.parameters(), world(), o);
  Mlp fresh(c);
  EXPECT_EQ(m.l2.named_parameters()[0].second.to_double_vector(),
            fresh.l2.named_parameters()[0].second.to_double_vector());
}

TEST(EngineRanks, TrainerMatchesSingleProcess) {
  for (Preset p : kPresets) train::check_trainer_matches_single_process(world(), p);
}

TEST(EngineRanks, TrainerWithLoraMatchesSingleProcess) {
  for (Preset p : kPresets) train::check_trainer_matches_single_process(world(), p, {.lora = true});
}

TEST(EngineRanks, TrainerWithQloraMatchesSingleProcess) {
  for (Preset p : kPresets) train::check_trainer_matches_single_process(world(), p, {.qlora = true});
}

TEST(EngineRanks, TrainerWithGradientCheckpointingMatchesSingleProcess) {
  train::check_trainer_matches_single_process(world(), Preset::zero2, {.checkpointing = true});
}

TEST(EngineRanks, TrainerFp16SkipsTogether) {
  for (Preset p : kPresets) train::check_trainer_fp16_skips_together(world(), p);
}

TEST(EngineRanks, TrainerResumesExactly) {
  train::check_trainer_resumes_exactly(world(), Preset::zero2, DType::f32);
  train::check_trainer_resumes_exactly(world(), Preset::zero1, DType::bf16);
}

}  // namespace
}  // namespace shardlab::dist::testing
