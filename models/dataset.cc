// Loading, tokenizing and splitting training data (see dataset.h).
#include "models/dataset.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/random.h"

namespace shardlab::models {

LoadStats& LoadStats::operator+=(const LoadStats& o) {
  records += o.records;
  samples += o.samples;
  truncated += o.truncated;
  dropped_prompt_too_long += o.dropped_prompt_too_long;
  dropped_no_targets += o.dropped_no_targets;
  return *this;
}

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SL_CHECK(in.good(), path, ": cannot open dataset file");
  std::ostringstream ss;
  ss << in.rdbuf();
  SL_CHECK(!in.bad(), path, ": error while reading dataset file");
  return ss.str();
}

// JSON lines with 1-based line numbers; blank lines are skipped with parse_jsonl's rule.
std::vector<Record> read_jsonl(const std::string& path, std::string_view text) {
  std::vector<json::Value> values = json::parse_jsonl(text, path);
  std::vector<Record> records;
  records.reserve(values.size());
  size_t pos = 0, next_value = 0;
  int64_t line = 1;
  while (pos < text.size() && next_value < values.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view ln = text.substr(pos, nl - pos);
    if (ln.find_first_not_of(" \t\r") != std::string_view::npos)
      records.push_back({std::move(values[next_value++]), path + ":" + std::to_string(line)});
    ++line;
    pos = nl + 1;
  }
  return records;
}

}  // namespace

std::vector<Record> load_records(const std::string& path) {
  const bool jsonl = ends_with(path, ".jsonl");
  SL_CHECK(jsonl || ends_with(path, ".json"), path, ": unsupported dataset file (expected .json or .jsonl)");
  std::string text = read_text(path);
  std::vector<Record> records;
  size_t first = text.find_first_not_of(" \t\r\n");
  if (!jsonl && first != std::string::npos && text[first] == '[') {
    json::Value root = json::parse(text, path);
    json::Array& items = root.as_array();
    records.reserve(items.size());
    for (size_t i = 0; i < items.size(); ++i)
      records.push_back({std::move(items[i]), path + ": record " + std::to_string(i) + " (0-based)"});
  } else {
    records = read_jsonl(path, text);
  }
  SL_CHECK(!records.empty(), path, ": dataset has no records");
  return records;
}

std::optional<Sample> tokenize_parts(const PromptParts& parts, const TextEncoder& encoder,
                                     const TokenizeOptions& options, LoadStats& stats) {
  SL_CHECK(encoder.encode, "tokenize: TextEncoder has no encode function");
  SL_CHECK(options.sequence_len >= 2, "tokenize: sequence_len must be at least 2, got ", options.sequence_len);
  Sample s;
  if (encoder.bos_id) {
    s.input_ids.push_back(*encoder.bos_id);
    s.labels.push_back(kIgnoreLabel);  // never predicted: nothing comes before it
  }
  if (!parts.prompt.empty()) {
    for (int64_t id : encoder.encode(parts.prompt)) {
      s.input_ids.push_back(id);
      s.labels.push_back(options.train_on_inputs ? id : kIgnoreLabel);
    }
  }
  const int64_t prompt_len = s.size();
  for (int64_t id : encoder.encode(parts.response)) {
    s.input_ids.push_back(id);
    s.labels.push_back(id);
  }
  if (encoder.eos_id) {
    s.input_ids.push_back(*encoder.eos_id);
    s.labels.push_back(*encoder.eos_id);
  }
  if (prompt_len >= options.sequence_len && s.size() > prompt_len) {
    ++stats.dropped_prompt_too_long;
    return std::nullopt;
  }
  if (s.size() > options.sequence_len) {
    s.input_ids.resize(options.sequence_len);
    s.labels.resize(options.sequence_len);
    ++stats.truncated;
  }
  bool any_target = false;
  for (size_t t = 1; t < s.labels.size(); ++t) any_target = any_target || s.labels[t] != kIgnoreLabel;
  if (!any_target) {
    ++stats.dropped_no_targets;
    return std::nullopt;
  }
  ++stats.samples;
  return s;
}

TokenizedDataset load_dataset(const DatasetSpec& spec, const TextEncoder& encoder, const TokenizeOptions& options) {
  spec.validate();
  TokenizedDataset out;
  std::vector<Record> records = load_records(spec.path);
  out.stats.records = static_cast<int64_t>(records.size());
  out.samples.reserve(records.size());
  for (const Record& r : records) {
    PromptParts parts = format_record(spec, r.value, r.where);
    if (std::optional<Sample> s = tokenize_parts(parts, encoder, options, out.stats)) out.samples.push_back(std::move(*s));
  }
  SL_CHECK(!out.samples.empty(), spec.path, ": no sample left after tokenization (", out.stats.records, " records, ",
           out.stats.dropped_prompt_too_long, " dropped with the prompt filling sequence_len ", options.sequence_len,
           ", ", out.stats.dropped_no_targets, " with nothing to train on)");
  return out;
}

TokenizedDataset load_datasets(const std::vector<DatasetSpec>& specs, const TextEncoder& encoder,
                               const TokenizeOptions& options) {
  SL_CHECK(!specs.empty(), "load_datasets: no dataset given");
  TokenizedDataset out;
  for (const DatasetSpec& spec : specs) {
    TokenizedDataset one = load_dataset(spec, encoder, options);
    out.stats += one.stats;
    out.samples.insert(out.samples.end(), std::make_move_iterator(one.samples.begin()),
                       std::make_move_iterator(one.samples.end()));
  }
  return out;
}

namespace {
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace

std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed, uint64_t stream) {
  SL_CHECK(n >= 0, "seeded_permutation: negative size ", n);
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  const uint64_t key = splitmix64(seed ^ splitmix64(stream));
  for (int64_t i = n - 1; i > 0; --i) {
    std::array<uint32_t, 4> r = philox4x32(key, static_cast<uint64_t>(i));
    uint64_t bits = (static_cast<uint64_t>(r[0]) << 32) | r[1];
    // Modulo bias is below n / 2^64: irrelevant for any dataset size.
    int64_t j = static_cast<int64_t>(bits % static_cast<uint64_t>(i + 1));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

TrainValSplit split_train_val(std::vector<Sample> samples, double val_set_size, uint64_t seed) {
  const int64_t n = static_cast<int64_t>(samples.size());
  SL_CHECK(std::isfinite(val_set_size) && val_set_size >= 0, "val_set_size must be >= 0, got ", val_set_size);
  int64_t n_val = 0;
  if (val_set_size > 0 && val_set_size < 1) {
    n_val = static_cast<int64_t>(std::ceil(val_set_size * static_cast<double>(n)));
  } else if (val_set_size >= 1) {
    SL_CHECK(val_set_size == std::floor(val_set_size), "val_set_size ", val_set_size,
             " is neither a fraction below 1 nor a whole number of samples");
    n_val = static_cast<int64_t>(val_set_size);
  }
  SL_CHECK(n_val < n, "val_set_size ", val_set_size, " takes ", n_val, " of ", n,
           " samples for validation and leaves none for training");
  TrainValSplit out;
  if (n_val == 0) {
    out.train = std::move(samples);
    return out;
  }
  std::vector<char> is_val(static_cast<size_t>(n), 0);
  std::vector<int64_t> perm = seeded_permutation(n, seed, kValSplitStream);
  for (int64_t i = 0; i < n_val; ++i) is_val[perm[i]] = 1;
  out.val.reserve(n_val);
  out.train.reserve(n - n_val);
  for (int64_t i = 0; i < n; ++i) (is_val[i] ? out.val : out.train).push_back(std::move(samples[i]));
  return out;
}

}  // namespace shardlab::models
