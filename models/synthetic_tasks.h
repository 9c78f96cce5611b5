// Synthetic instruction tasks in Alpaca form ({instruction, input, output}) for checking that a
// model learns: copying, a letter shift, string reversal, multi-digit addition and key->value
// lookup, drawn from a seed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace shardlab::models {

enum class SynthTask { copy, shift, reverse, add, lookup };
const char* synth_task_name(SynthTask t);
// A task name, a comma-separated list of them ("reverse,add"), or "mix" (reverse, add and lookup).
// Anything else is an error naming the value. Duplicates are an error too.
std::vector<SynthTask> parse_synth_tasks(std::string_view spec);

// Which examples a set may hold. The split is a property of the example (a hash of instruction
// and input, see in_test_split), not of the seed, so a train set and a test set are disjoint
// whatever seeds they were drawn with.
enum class SynthSplit { all, train, test };
SynthSplit parse_synth_split(std::string_view name);  // "all" | "train" | "test"

struct SynthExample {
  std::string instruction;
  std::string input;
  std::string output;
  bool operator==(const SynthExample&) const = default;
};

// The instruction each task is asked with (the same for every example of the task).
std::string_view synth_instruction(SynthTask t);

// The shape of every task (fixed so that data sets with the same seed are the same everywhere):
//   copy:    input = 5 lowercase letters; output = the same letters.
//   shift:   input = 5 lowercase letters; output = each letter's successor (a->b, ..., z->a).
//   reverse: input = 4..8 lowercase letters; output = the letters in reverse order.
//   add:     input = "A+B" with A, B in 0..999 (decimal, no leading zeros); output = A+B.
//   lookup:  input = 4 pairs "k=vvv" (distinct one-letter keys, three-digit values, zero-padded),
//            space-separated, then " | " and one of the keys; output = its value.
struct SynthOptions {
  std::vector<SynthTask> tasks = {SynthTask::reverse};  // each example picks one uniformly
  int64_t n = 100;                                       // examples to produce (distinct)
  uint64_t seed = 0;
  SynthSplit split = SynthSplit::all;
};

// n distinct examples in draw order. Deterministic: the draws come from SplitMix64 with
// unbiased bounded integers (no std::*_distribution, whose output differs between standard
// libraries). An error when the tasks cannot give n distinct examples of the split.
std::vector<SynthExample> generate_synthetic(const SynthOptions& options);

// true for the held-out tenth: FNV-1a 64 of instruction + '\n' + input, modulo 10, equals 0.
bool in_test_split(const SynthExample& e);

// The answer each task's rule gives for `input` (what the generator wrote as output); used by
// tests and by anyone checking a data set. An input that does not parse is an error naming it.
std::string synth_answer(SynthTask t, std::string_view input);

// One JSON object per line: {"instruction": ..., "input": ..., "output": ...}.
std::string synth_to_jsonl(const std::vector<SynthExample>& examples);

}  // namespace shardlab::models
