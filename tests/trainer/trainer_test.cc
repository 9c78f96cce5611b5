// The training loop: exact resume from a checkpoint, gradient accumulation equal to one padded
// batch, NaN detection naming the step, logs and checkpoint files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "autograd/functions.h"
#include "tests/trainer/trainer_fixtures.h"
#include "tools/trainer/trainer.h"

namespace shardlab::train {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("shardlab_trainer_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  TrainerOptions options(int64_t steps, int64_t accum) {
    TrainerOptions o;
    o.max_steps = steps;
    o.gradient_accumulation_steps = accum;
    o.max_grad_norm = 1.0;
    o.schedule = {nn::LrScheduleKind::cosine, 5e-3, 2, steps};
    o.output_dir = dir_.string();
    o.print_progress = false;
    return o;
  }
  fs::path dir_;
};

TEST_F(TrainerTest, ResumingFromACheckpointReproducesTheLossesBitForBit) {
  std::vector<double> uninterrupted;
  {
    models::LlamaForCausalLM m(tiny(), 1);
    nn::AdamW opt(m.trainable_parameters(), 0.0);
    CountingStream data(2);
    TrainerOptions o = options(6, 2);
    o.output_dir.clear();
    Trainer plain(m, opt, data, o);
    plain.run();
    for (auto& s : plain.history()) uninterrupted.push_back(s.loss);
  }
  std::string checkpoint;
  {
    models::LlamaForCausalLM m(tiny(), 1);
    nn::AdamW opt(m.trainable_parameters(), 0.0);
    CountingStream data(2);
    TrainerOptions o = options(6, 2);
    Trainer t(m, opt, data, o);
    for (int i = 0; i < 3; ++i) t.step();
    checkpoint = t.save_checkpoint();
  }
  models::LlamaForCausalLM m(tiny(), 99);  // different init: everything must come from the checkpoint
  nn::AdamW opt(m.trainable_parameters(), 0.0);
  CountingStream data(2);
  Trainer t(m, opt, data, options(6, 2));
  t.load_checkpoint(checkpoint);
  EXPECT_EQ(t.global_step(), 3);
  for (int i = 3; i < 6; ++i) EXPECT_EQ(t.step().loss, uninterrupted[i]) << "step " << i + 1;
}

TEST_F(TrainerTest, EightMicroBatchesOfOneGiveTheGradientOfOneBatchOfEight) {
  auto grads_after_one_step = [&](int64_t per_batch, int64_t accum) {
    models::LlamaForCausalLM m(tiny(), 2);
    nn::SGD opt(m.trainable_parameters(), 0.0);  // lr 0: parameters stay put, gradients remain
    CountingStream data(per_batch);
    TrainerOptions o = options(1, accum);
    o.max_grad_norm = 0.0;
    o.output_dir.clear();
    Trainer t(m, opt, data, o);
    StepStats s = t.step();
    std::vector<std::vector<double>> g;
    for (const Tensor& p : m.trainable_parameters()) g.push_back(p.grad().to_double_vector());
    return std::pair{s, g};
  };
  auto [one, ga] = grads_after_one_step(1, 8);
  auto [eight, gb] = grads_after_one_step(8, 1);
  EXPECT_EQ(one.target_tokens, eight.target_tokens);
  EXPECT_NEAR(one.loss, eight.loss, 1e-6);
  for (size_t i = 0; i < ga.size(); ++i)
    for (size_t j = 0; j < ga[i].size(); ++j) ASSERT_NEAR(ga[i][j], gb[i][j], 1e-6 + 1e-4 * std::abs(gb[i][j])) << i;
}

TEST_F(TrainerTest, RunLogsEveryStepAndSavesACompleteCheckpoint) {
  models::LlamaForCausalLM m(tiny(), 3);
  nn::AdamW opt(m.trainable_parameters(), 0.0);
  CountingStream data(4);
  TrainerOptions o = options(20, 1);
  o.save_steps = 10;
  Trainer t(m, opt, data, o);
  t.run();
  EXPECT_LT(t.history().back().loss, t.history().front().loss);
  std::ifstream log(dir_ / "log.jsonl");
  int lines = 0;
  for (std::string line; std::getline(log, line);) ++lines;
  EXPECT_EQ(lines, 20);
  for (const char* ck : {"checkpoint-10", "checkpoint-20"})
    for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"})
      EXPECT_TRUE(fs::exists(dir_ / ck / f)) << ck << "/" << f;
  for (auto& entry : fs::directory_iterator(dir_))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
}

TEST_F(TrainerTest, NanLossStopsWithTheStepAndWritesNothing) {
  models::LlamaForCausalLM m(tiny(), 4);
  ops::fill_(m.named_parameters()[0].second, std::nan(""));
  nn::AdamW opt(m.trainable_parameters(), 0.0);
  CountingStream data(1);
  Trainer t(m, opt, data, options(3, 1));
  try {
    t.run();
    FAIL() << "a NaN loss was not reported";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("loss is nan at step 1"));
  }
  EXPECT_FALSE(fs::exists(dir_ / "checkpoint-1"));
}

TEST_F(TrainerTest, ResumeFromAMissingCheckpointIsNamed) {
  models::LlamaForCausalLM m(tiny(), 5);
  nn::AdamW opt(m.trainable_parameters(), 0.0);
  CountingStream data(1);
  Trainer t(m, opt, data, options(3, 1));
  try {
    t.load_checkpoint((dir_ / "checkpoint-7").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("checkpoint-7"));
  }
}

}  // namespace
}  // namespace shardlab::train
