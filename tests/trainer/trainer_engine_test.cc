// The Trainer with a data-parallel engine on one rank: it matches the plain Trainer, resumes
// exactly from its per-rank checkpoint files, and refuses a checkpoint of another layout.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "distributed/local_process_group.h"
#include "tests/trainer/data_parallel_fixtures.h"

namespace shardlab::train {
namespace {

using ::testing::HasSubstr;

TEST(TrainerEngine, MatchesTheSingleProcessTrainer) {
  for (dist::Preset p : {dist::Preset::ddp, dist::Preset::zero1, dist::Preset::zero2}) {
    dist::LocalProcessGroup g;
    check_trainer_matches_single_process(g, p);
  }
}

TEST(TrainerEngine, LoraMatchesTheSingleProcessTrainer) {
  dist::LocalProcessGroup g;
  check_trainer_matches_single_process(g, dist::Preset::zero2, {.lora = true});
}

TEST(TrainerEngine, QloraMatchesTheSingleProcessTrainer) {
  dist::LocalProcessGroup g;
  check_trainer_matches_single_process(g, dist::Preset::zero2, {.qlora = true});
}

TEST(TrainerEngine, GradientCheckpointingMatchesTheSingleProcessTrainer) {
  dist::LocalProcessGroup g;
  check_trainer_matches_single_process(g, dist::Preset::zero2, {.checkpointing = true});
}

TEST(TrainerEngine, Fp16OverflowSkipsTheStep) {
  dist::LocalProcessGroup g;
  check_trainer_fp16_skips_together(g, dist::Preset::zero1);
}

TEST(TrainerEngine, ResumesExactly) {
  dist::LocalProcessGroup g;
  check_trainer_resumes_exactly(g, dist::Preset::zero2, DType::f32);
  dist::LocalProcessGroup h;
  check_trainer_resumes_exactly(h, dist::Preset::zero1, DType::bf16);
}

TEST(TrainerEngine, CheckpointOfAnotherPresetIsRefused) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("shardlab_dp_layout_" + std::to_string(::getpid()));
  dist::LocalProcessGroup g;
  TrainerOptions o = dp_options(1);
  o.output_dir = dir.string();
  DataParallelTrainer saved(g, dist::Preset::zero2, DType::f32, o);
  saved.trainer->run();
  DataParallelTrainer other(g, dist::Preset::ddp, DType::f32, dp_options(1));
  EXPECT_THAT([&] { other.trainer->load_checkpoint((dir / "checkpoint-1").string()); },
              ::testing::ThrowsMessage<Error>(HasSubstr("\"preset\":\"zero2\"")));
  fs::remove_all(dir);
}

TEST(TrainerEngine, MasterWeightsBesideAnEngineAreRefused) {
  dist::LocalProcessGroup g;
  DataParallelTrainer dp(g, dist::Preset::ddp, DType::bf16, dp_options(1));
  nn::MasterWeights masters(dp.model.trainable_parameters());
  CountingStream data(1);
  EXPECT_THAT([&] { Trainer t(dp.model, *dp.setup.optimizer, data, dp_options(1), {}, {&masters, nullptr}, dp.setup.engine.get()); },
              ::testing::ThrowsMessage<Error>(HasSubstr("the engine keeps the fp32 masters")));
}

}  // namespace
}  // namespace shardlab::train
