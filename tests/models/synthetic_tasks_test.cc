// The synthetic instruction tasks: answers by hand, determinism across calls, disjoint splits,
// task parsing errors and the JSONL form.
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "core/json.h"
#include "models/synthetic_tasks.h"

namespace shardlab::models {
namespace {

TEST(SyntheticTasks, AnswersFollowEachRule) {
  EXPECT_EQ(synth_answer(SynthTask::copy, "abcde"), "abcde");
  EXPECT_EQ(synth_answer(SynthTask::shift, "abyzq"), "bczar");
  EXPECT_EQ(synth_answer(SynthTask::reverse, "hello"), "olleh");
  EXPECT_EQ(synth_answer(SynthTask::add, "999+1"), "1000");
  EXPECT_EQ(synth_answer(SynthTask::add, "0+0"), "0");
  EXPECT_EQ(synth_answer(SynthTask::lookup, "a=381 k=077 z=512 q=940 | k"), "077");
  EXPECT_EQ(synth_answer(SynthTask::lookup, "a=381 k=077 z=512 q=940 | q"), "940");
  EXPECT_THROW(synth_answer(SynthTask::lookup, "a=381 | b"), Error);
  EXPECT_THROW(synth_answer(SynthTask::add, "12-3"), Error);
  EXPECT_THROW(synth_answer(SynthTask::shift, "Abc"), Error);
}

TEST(SyntheticTasks, SameSeedSameSetOtherSeedOtherSet) {
  SynthOptions o;
  o.tasks = parse_synth_tasks("mix");
  o.n = 50;
  o.seed = 7;
  const auto a = generate_synthetic(o), b = generate_synthetic(o);
  EXPECT_EQ(a, b);
  o.seed = 8;
  EXPECT_NE(a, generate_synthetic(o));
}

// Pinned first draws, computed independently by a few lines of Python implementing SplitMix64 and
// the rejection-sampled below(n) (one draw picks the task, then key/value pairs, then the key): a
// change in the generator, or a platform-dependent draw, would change the documented data sets.
TEST(SyntheticTasks, FirstDrawsArePinned) {
  SynthOptions o;
  o.tasks = {SynthTask::lookup};
  o.n = 1;
  o.seed = 1;
  const auto e = generate_synthetic(o);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].input, "t=590 d=761 c=045 l=520 | c") << "input drawn: " << e[0].input;
  EXPECT_EQ(e[0].output, "045");
}

TEST(SyntheticTasks, ExamplesAreWellFormedAndDistinct) {
  SynthOptions o;
  o.tasks = {SynthTask::copy, SynthTask::shift, SynthTask::reverse, SynthTask::add, SynthTask::lookup};
  o.n = 2000;
  o.seed = 3;
  std::set<std::string> seen;
  std::set<std::string> tasks_seen;
  for (const SynthExample& e : generate_synthetic(o)) {
    EXPECT_TRUE(seen.insert(e.instruction + "\n" + e.input).second) << "duplicate " << e.input;
    tasks_seen.insert(e.instruction);
    if (e.instruction == synth_instruction(SynthTask::copy) || e.instruction == synth_instruction(SynthTask::shift)) {
      EXPECT_EQ(e.input.size(), 5u);
    } else if (e.instruction == synth_instruction(SynthTask::reverse)) {
      EXPECT_GE(e.input.size(), 4u);
      EXPECT_LE(e.input.size(), 8u);
    } else if (e.instruction == synth_instruction(SynthTask::lookup)) {
      EXPECT_EQ(e.output.size(), 3u);  // zero-padded values
    }
  }
  EXPECT_EQ(tasks_seen.size(), 5u);
}

TEST(SyntheticTasks, TrainAndTestSplitsAreDisjoint) {
  SynthOptions o;
  o.tasks = {SynthTask::add};
  o.n = 300;
  o.seed = 1;
  o.split = SynthSplit::train;
  std::set<std::string> train;
  for (const SynthExample& e : generate_synthetic(o)) {
    EXPECT_FALSE(in_test_split(e));
    train.insert(e.input);
  }
  o.split = SynthSplit::test;
  o.seed = 1;  // the same seed: the split, not the seed, keeps them apart
  for (const SynthExample& e : generate_synthetic(o)) {
    EXPECT_TRUE(in_test_split(e));
    EXPECT_FALSE(train.contains(e.input)) << e.input;
  }
}

TEST(SyntheticTasks, TestSplitIsAboutATenth) {
  SynthOptions o;
  o.tasks = {SynthTask::reverse};
  o.n = 5000;
  int64_t held_out = 0;
  for (const SynthExample& e : generate_synthetic(o)) held_out += in_test_split(e) ? 1 : 0;
  EXPECT_GT(held_out, 400);
  EXPECT_LT(held_out, 600);
}

TEST(SyntheticTasks, ParsingNamesTheCulprit) {
  EXPECT_EQ(parse_synth_tasks("reverse,add").size(), 2u);
  EXPECT_EQ(parse_synth_tasks("mix").size(), 3u);
  try {
    parse_synth_tasks("reverse,sort");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"sort\""), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_synth_tasks("add,add"), Error);
  EXPECT_THROW(parse_synth_tasks(""), Error);
  EXPECT_THROW(parse_synth_split("dev"), Error);
}

TEST(SyntheticTasks, JsonlHasTheAlpacaFields) {
  const std::string text = synth_to_jsonl({{"Copy the letters.", "ab\"c", "ab\"c"}});
  const auto lines = json::parse_jsonl(text, "synth");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].at("instruction").as_string(), "Copy the letters.");
  EXPECT_EQ(lines[0].at("input").as_string(), "ab\"c");
  EXPECT_EQ(lines[0].at("output").as_string(), "ab\"c");
}

}  // namespace
}  // namespace shardlab::models
