// Datasets from crafted files: record loading with line numbers, tokenization with BOS/EOS and
// prompt masks, truncation and drops, every loading error naming file, line/record and field,
// and the seeded validation split.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "models/dataset.h"
#include "tests/models/data_test_util.h"

namespace shardlab::models {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::char_ids;
using testing::data_path;
using testing::error_of;
using testing::toy_encoder;

std::vector<int64_t> concat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
std::vector<int64_t> ignored(size_t n) { return std::vector<int64_t>(n, kIgnoreLabel); }

TEST(Dataset, JsonlRecordsCarryTheirLineNumbers) {
  std::vector<Record> r = load_records(data_path("alpaca.jsonl"));
  ASSERT_EQ(r.size(), 3u);
  // Line 2 is blank.
  EXPECT_THAT(r[0].where, HasSubstr("alpaca.jsonl:1"));
  EXPECT_THAT(r[1].where, HasSubstr("alpaca.jsonl:3"));
  EXPECT_THAT(r[2].where, HasSubstr("alpaca.jsonl:4"));
  EXPECT_EQ(r[1].value.at("instruction").as_string(), "Greet");
}

TEST(Dataset, JsonArrayRecordsCarryTheirIndex) {
  std::vector<Record> r = load_records(data_path("alpaca.json"));
  ASSERT_EQ(r.size(), 2u);
  EXPECT_THAT(r[1].where, HasSubstr("alpaca.json: record 1 (0-based)"));
}

TEST(Dataset, AlpacaTokensAndMask) {
  DatasetSpec spec;
  spec.path = data_path("alpaca.jsonl");
  TokenizedDataset d = load_dataset(spec, toy_encoder(), {.sequence_len = 4096});
  ASSERT_EQ(d.samples.size(), 3u);
  EXPECT_EQ(d.stats.records, 3);
  EXPECT_EQ(d.stats.samples, 3);
  const std::string prompt =
      "Below is an instruction that describes a task. Write a response that appropriately completes the "
      "request.\n\n### Instruction:\nGreet\n\n### Response:\n";
  const Sample& s = d.samples[1];
  EXPECT_EQ(s.input_ids, concat({{1}, char_ids(prompt), char_ids("Hi"), {2}}));
  EXPECT_EQ(s.labels, concat({ignored(1 + prompt.size()), char_ids("Hi"), {2}}));
}

TEST(Dataset, TrainOnInputsTrainsThePromptButNotBos) {
  PromptParts parts{"ab", "c"};
  LoadStats stats;
  auto s = tokenize_parts(parts, toy_encoder(), {.sequence_len = 16, .train_on_inputs = true}, stats);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->input_ids, concat({{1}, char_ids("abc"), {2}}));
  EXPECT_EQ(s->labels, concat({{kIgnoreLabel}, char_ids("abc"), {2}}));
}

TEST(Dataset, CompletionTrainsOnEverything) {
  DatasetSpec spec;
  spec.path = data_path("completion.jsonl");
  spec.type = DatasetType::completion;
  TokenizedDataset d = load_dataset(spec, toy_encoder(), {.sequence_len = 64});
  ASSERT_EQ(d.samples.size(), 3u);
  EXPECT_EQ(d.samples[0].input_ids, concat({{1}, char_ids("abc"), {2}}));
  EXPECT_EQ(d.samples[0].labels, concat({{kIgnoreLabel}, char_ids("abc"), {2}}));
  EXPECT_EQ(d.samples[1].size(), 13);
}

TEST(Dataset, NoBosNoEos) {
  LoadStats stats;
  auto s = tokenize_parts({"p", "rr"}, toy_encoder(false, false), {.sequence_len = 16}, stats);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->input_ids, char_ids("prr"));
  EXPECT_EQ(s->labels, concat({ignored(1), char_ids("rr")}));
}

TEST(Dataset, CustomFormatFromFile) {
  DatasetSpec spec;
  spec.path = data_path("custom.jsonl");
  spec.type = DatasetType::custom;
  spec.field_instruction = "q";
  spec.field_input = "ctx";
  spec.field_output = "a";
  spec.field_system = "sys";
  spec.system_prompt = "D";
  spec.format = "[{system}] {instruction}: {input} => ";
  spec.no_input_format = "[{system}] {instruction} => ";
  TokenizedDataset d = load_dataset(spec, toy_encoder(false, true), {.sequence_len = 64});
  ASSERT_EQ(d.samples.size(), 2u);
  EXPECT_EQ(d.samples[0].input_ids, concat({char_ids("[S1] Q1: C1 => A1"), {2}}));
  EXPECT_EQ(d.samples[1].input_ids, concat({char_ids("[D] Q2 => A2"), {2}}));
  EXPECT_EQ(d.samples[1].labels, concat({ignored(std::string("[D] Q2 => ").size()), char_ids("A2"), {2}}));
}

TEST(Dataset, TruncationKeepsTheHead) {
  LoadStats stats;
  // [BOS] p p | r r r r [EOS] = 8 tokens, cut to 5: BOS, the prompt and two response tokens.
  auto s = tokenize_parts({"pp", "rrrr"}, toy_encoder(), {.sequence_len = 5}, stats);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->input_ids, concat({{1}, char_ids("pprr")}));
  EXPECT_EQ(s->labels, concat({ignored(3), char_ids("rr")}));
  EXPECT_EQ(stats.truncated, 1);
  EXPECT_EQ(stats.samples, 1);
}

TEST(Dataset, SampleWhoseResponseIsCutIsDroppedAndCounted) {
  LoadStats stats;
  // [BOS] + 4 prompt tokens fill sequence_len 5: the response would be entirely cut.
  EXPECT_FALSE(tokenize_parts({"pppp", "r"}, toy_encoder(), {.sequence_len = 5}, stats));
  EXPECT_EQ(stats.dropped_prompt_too_long, 1);
  // Even when training on inputs: the response is what the record is for.
  EXPECT_FALSE(tokenize_parts({"pppp", "r"}, toy_encoder(), {.sequence_len = 5, .train_on_inputs = true}, stats));
  EXPECT_EQ(stats.dropped_prompt_too_long, 2);
  // One token of response left: kept.
  EXPECT_TRUE(tokenize_parts({"ppp", "rr"}, toy_encoder(), {.sequence_len = 5}, stats));
  EXPECT_EQ(stats.samples, 1);
}

TEST(Dataset, SampleWithNothingToTrainIsDropped) {
  LoadStats stats;
  // Empty completion without EOS: only BOS, which is never a target.
  EXPECT_FALSE(tokenize_parts({"", ""}, toy_encoder(true, false), {.sequence_len = 8}, stats));
  // A single target at position 0 is never predicted either.
  EXPECT_FALSE(tokenize_parts({"", "x"}, toy_encoder(false, false), {.sequence_len = 8}, stats));
  EXPECT_EQ(stats.dropped_no_targets, 2);
}

TEST(Dataset, DroppedRecordsAreCountedWhenLoading) {
  DatasetSpec spec;
  spec.path = data_path("completion.jsonl");
  spec.type = DatasetType::completion;
  // Samples: 5, 13 and 4 tokens with BOS/EOS; sequence_len 4 truncates the first two.
  TokenizedDataset d = load_dataset(spec, toy_encoder(), {.sequence_len = 4});
  EXPECT_EQ(d.stats.truncated, 2);
  EXPECT_EQ(d.samples.size(), 3u);
  for (const Sample& s : d.samples) EXPECT_LE(s.size(), 4);
}

TEST(Dataset, LoadDatasetsConcatenatesInOrder) {
  DatasetSpec a, c;
  a.path = data_path("alpaca.json");
  c.path = data_path("completion.jsonl");
  c.type = DatasetType::completion;
  TokenizedDataset d = load_datasets({a, c}, toy_encoder(), {.sequence_len = 4096});
  ASSERT_EQ(d.samples.size(), 5u);
  EXPECT_EQ(d.stats.records, 5);
  EXPECT_EQ(d.samples[2].input_ids, concat({{1}, char_ids("abc"), {2}}));
}

// ---- errors: each names the file, the line or record, and the field ----

std::string load_error(const std::string& file, DatasetType type = DatasetType::alpaca) {
  DatasetSpec spec;
  spec.path = data_path(file);
  spec.type = type;
  return error_of([&] { load_dataset(spec, toy_encoder(), {.sequence_len = 64}); });
}

TEST(DatasetErrors, MissingField) {
  EXPECT_THAT(load_error("missing_output.jsonl"), HasSubstr("missing_output.jsonl:3: field \"output\" is missing"));
}
TEST(DatasetErrors, WrongType) {
  EXPECT_THAT(load_error("wrong_type.json"),
              HasSubstr("wrong_type.json: record 1 (0-based): field \"output\" must be a string, got number"));
  EXPECT_THAT(load_error("wrong_input_type.jsonl"),
              HasSubstr("wrong_input_type.jsonl:1: field \"input\" must be a string, got number"));
}
TEST(DatasetErrors, CompletionFieldMissing) {
  DatasetSpec spec;
  spec.path = data_path("completion.jsonl");
  spec.type = DatasetType::completion;
  spec.field = "body";
  EXPECT_THAT(error_of([&] { load_dataset(spec, toy_encoder(), {.sequence_len = 64}); }),
              HasSubstr("completion.jsonl:1: field \"body\" is missing"));
}
TEST(DatasetErrors, NotAnObject) {
  EXPECT_THAT(load_error("not_object.jsonl", DatasetType::completion),
              HasSubstr("not_object.jsonl:2: expected a JSON object, got array"));
}
TEST(DatasetErrors, SyntaxErrorNamesTheLine) {
  EXPECT_THAT(load_error("bad_syntax.jsonl", DatasetType::completion), HasSubstr("bad_syntax.jsonl:2:"));
}
TEST(DatasetErrors, EmptyDataset) {
  EXPECT_THAT(load_error("empty.jsonl"), AllOf(HasSubstr("empty.jsonl"), HasSubstr("no records")));
  EXPECT_THAT(load_error("empty_array.json"), AllOf(HasSubstr("empty_array.json"), HasSubstr("no records")));
}
TEST(DatasetErrors, MissingFileAndBadExtension) {
  EXPECT_THAT(load_error("does_not_exist.jsonl"),
              AllOf(HasSubstr("does_not_exist.jsonl"), HasSubstr("cannot open")));
  EXPECT_THAT(load_error("data.csv"), AllOf(HasSubstr("data.csv"), HasSubstr("expected .json or .jsonl")));
}
TEST(DatasetErrors, EverySampleDropped) {
  DatasetSpec spec;
  spec.path = data_path("alpaca.jsonl");
  // The Alpaca preamble alone is longer than 16 tokens.
  EXPECT_THAT(error_of([&] { load_dataset(spec, toy_encoder(), {.sequence_len = 16}); }),
              AllOf(HasSubstr("alpaca.jsonl"), HasSubstr("no sample left"), HasSubstr("3 dropped")));
}

// ---- validation split ----

std::vector<Sample> numbered(int64_t n) {
  std::vector<Sample> s;
  for (int64_t i = 0; i < n; ++i) s.push_back({{1, 100 + i}, {kIgnoreLabel, 100 + i}});
  return s;
}
std::vector<int64_t> ids(const std::vector<Sample>& s) {
  std::vector<int64_t> out;
  for (const Sample& x : s) out.push_back(x.input_ids[1] - 100);
  return out;
}

TEST(DataValSplit, FractionIsCeilAndHalvesCoverTheData) {
  TrainValSplit split = split_train_val(numbered(10), 0.25, 7);
  EXPECT_EQ(split.val.size(), 3u);  // ceil(2.5)
  EXPECT_EQ(split.train.size(), 7u);
  std::vector<int64_t> all = ids(split.train), val = ids(split.val);
  EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));  // original order kept
  EXPECT_TRUE(std::is_sorted(val.begin(), val.end()));
  all.insert(all.end(), val.begin(), val.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, ids(numbered(10)));
}

TEST(DataValSplit, AbsoluteCountDeterministicAndSeedSensitive) {
  TrainValSplit a = split_train_val(numbered(20), 4, 1);
  TrainValSplit b = split_train_val(numbered(20), 4, 1);
  EXPECT_EQ(a.val.size(), 4u);
  EXPECT_EQ(ids(a.val), ids(b.val));
  std::set<std::vector<int64_t>> seen;
  for (uint64_t seed = 0; seed < 8; ++seed) seen.insert(ids(split_train_val(numbered(20), 4, seed).val));
  EXPECT_GT(seen.size(), 4u);
}

TEST(DataValSplit, ZeroMeansNoValidation) {
  TrainValSplit s = split_train_val(numbered(5), 0, 1);
  EXPECT_EQ(s.train.size(), 5u);
  EXPECT_TRUE(s.val.empty());
}

TEST(DataValSplit, Errors) {
  EXPECT_THAT(error_of([] { split_train_val(numbered(5), 5, 1); }), HasSubstr("leaves none for training"));
  EXPECT_THAT(error_of([] { split_train_val(numbered(5), 2.5, 1); }), HasSubstr("whole number"));
  EXPECT_THAT(error_of([] { split_train_val(numbered(5), -0.1, 1); }), HasSubstr("val_set_size"));
}

}  // namespace
}  // namespace shardlab::models
