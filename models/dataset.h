// Training data, from file to tokens: load local JSON/JSONL records, format them (prompt_format.h),
// tokenize into (input_ids, labels) with prompt masking and truncation, and split off a
// validation set. Batching lives in packing.h, epochs and ranks in data_loader.h.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "models/prompt_format.h"

namespace shardlab::models {

// Label of positions that are not trained on (Hugging Face's ignore_index).
inline constexpr int64_t kIgnoreLabel = -100;

// The slice of a tokenizer the data pipeline needs; the trainer adapts a Tokenizer to it.
// encode() must add no special tokens: BOS/EOS are added here when their ids are set.
struct TextEncoder {
  std::function<std::vector<int64_t>(std::string_view)> encode;
  std::optional<int64_t> bos_id, eos_id, pad_id;
};

// One tokenized example. labels[t] is the target for input_ids[t] (the model shifts: logits at
// t predict labels[t+1]); kIgnoreLabel where nothing is trained.
struct Sample {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> labels;
  int64_t size() const { return static_cast<int64_t>(input_ids.size()); }
};

struct TokenizeOptions {
  int64_t sequence_len = 2048;
  bool train_on_inputs = false;  // true: prompt tokens are targets too
};

// What loading did, so that the trainer can report it.
struct LoadStats {
  int64_t records = 0;      // records read from files
  int64_t samples = 0;      // samples kept
  int64_t truncated = 0;    // kept, but cut to sequence_len
  int64_t dropped_prompt_too_long = 0;  // the whole response fell past sequence_len
  int64_t dropped_no_targets = 0;       // nothing to train on (e.g. empty text, no EOS)
  LoadStats& operator+=(const LoadStats& o);
};

// A record plus where it came from, for errors: "data.jsonl:3" (1-based line) or
// "data.json: record 4 (0-based)" (index in the top-level array).
struct Record {
  json::Value value;
  std::string where;
};

// Reads a .jsonl file (one object per non-blank line) or a .json file (a top-level array of
// objects; a .json file that does not start with '[' is read as JSON lines, as the HF
// datasets library does). An unreadable file, another extension or no records is an error.
std::vector<Record> load_records(const std::string& path);

// Tokenizes one formatted record:
//   input_ids = [BOS] + encode(prompt) + encode(response) + [EOS]   (BOS/EOS when set)
//   labels    = -100 for BOS and (unless train_on_inputs) for the prompt; the ids elsewhere.
// Prompt and response are encoded separately so that the mask falls exactly on their boundary.
// Truncation keeps the head: at most sequence_len tokens (so a cut sample has no EOS). Returns
// nullopt, and counts it in `stats`, when the sample has nothing left to train on: the prompt
// fills sequence_len, or no label at positions 1.. is a target (position 0 is never predicted).
std::optional<Sample> tokenize_parts(const PromptParts& parts, const TextEncoder& encoder,
                                     const TokenizeOptions& options, LoadStats& stats);

struct TokenizedDataset {
  std::vector<Sample> samples;
  LoadStats stats;
};
// load_records + format_record + tokenize_parts for one spec; several specs concatenate in order.
TokenizedDataset load_dataset(const DatasetSpec& spec, const TextEncoder& encoder, const TokenizeOptions& options);
TokenizedDataset load_datasets(const std::vector<DatasetSpec>& specs, const TextEncoder& encoder,
                               const TokenizeOptions& options);

// A permutation of 0..n-1 that depends only on (seed, stream): Fisher-Yates driven by Philox,
// so it is the same on every platform and standard library (std::shuffle is not).
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed, uint64_t stream);
// The stream seeded_permutation uses for the validation split (epoch shuffles use the epoch).
inline constexpr uint64_t kValSplitStream = 0x76616c5f73706c74ull;  // "val_splt"

// Splits off a validation set before any training shuffle. val_set_size: 0 = none; in (0, 1) a
// fraction (ceil(fraction * n) samples, as HF's train_test_split); >= 1 an absolute count
// (must be a whole number). Which samples go to validation is a seeded permutation of the
// indices; both halves keep the original order. Leaving no training sample is an error.
struct TrainValSplit {
  std::vector<Sample> train;
  std::vector<Sample> val;
};
TrainValSplit split_train_val(std::vector<Sample> samples, double val_set_size, uint64_t seed);

}  // namespace shardlab::models
