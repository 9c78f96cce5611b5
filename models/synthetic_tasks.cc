// Synthetic instruction tasks: seeded generators for reversal, addition and key->value lookup,
// the rule each task follows, the hash split and the JSONL writer.
#include "models/synthetic_tasks.h"

#include <charconv>
#include <set>

#include "core/error.h"
#include "core/json.h"

namespace shardlab::models {

namespace {

// Copy and shift use one fixed length: a small model learns a fixed-offset copy in ~100 steps.
constexpr int kWordLen = 5;
constexpr int kReverseMinLen = 4, kReverseMaxLen = 8;
constexpr int kAddMax = 999;
constexpr int kLookupPairs = 4;

// SplitMix64 (Steele, Lea, Flood 2014): a tiny generator whose output is fixed by its definition,
// so a seed names the same data set on every platform.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) without modulo bias: draws past the largest multiple of n are redrawn.
  uint64_t below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = next();
    while (x >= limit);
    return x % n;
  }
  int64_t in_range(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo + 1))); }
  char letter() { return static_cast<char>('a' + below(26)); }

 private:
  uint64_t state_;
};

std::string letters(SplitMix64& rng, int64_t n) {
  std::string s(static_cast<size_t>(n), ' ');
  for (char& c : s) c = rng.letter();
  return s;
}



std::string add_input(SplitMix64& rng) {
  const int64_t a = rng.in_range(0, kAddMax), b = rng.in_range(0, kAddMax);
  return std::to_string(a) + "+" + std::to_string(b);
}

std::string lookup_input(SplitMix64& rng) {
  std::vector<std::string> keys;
  std::string out;
  while (static_cast<int>(keys.size()) < kLookupPairs) {
    std::string key(1, rng.letter());
    bool seen = false;
    for (const std::string& k : keys) seen = seen || k == key;
    if (seen) continue;
    keys.push_back(key);
    char value[4];
    std::snprintf(value, sizeof value, "%03d", static_cast<int>(rng.below(1000)));
    out += (out.empty() ? "" : " ") + key + "=" + value;
  }
  return out + " | " + keys[rng.below(keys.size())];
}

std::string draw_input(SynthTask task, SplitMix64& rng) {
  switch (task) {
    case SynthTask::copy:
    case SynthTask::shift: return letters(rng, kWordLen);
    case SynthTask::reverse: return letters(rng, rng.in_range(kReverseMinLen, kReverseMaxLen));
    case SynthTask::add: return add_input(rng);
    case SynthTask::lookup: return lookup_input(rng);
  }
  return {};
}

int64_t parse_operand(std::string_view s, std::string_view input) {
  int64_t v = -1;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  SL_CHECK(ec == std::errc() && ptr == s.data() + s.size() && v >= 0, "synthetic task add: input \"", input,
           "\" is not \"A+B\" with non-negative integers");
  return v;
}

}  // namespace

const char* synth_task_name(SynthTask t) {
  switch (t) {
    case SynthTask::copy: return "copy";
    case SynthTask::shift: return "shift";
    case SynthTask::reverse: return "reverse";
    case SynthTask::add: return "add";
    case SynthTask::lookup: return "lookup";
  }
  return "?";
}

std::vector<SynthTask> parse_synth_tasks(std::string_view spec) {
  if (spec == "mix") return {SynthTask::reverse, SynthTask::add, SynthTask::lookup};
  std::vector<SynthTask> out;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    if (comma == std::string_view::npos) comma = spec.size();
    std::string_view name = spec.substr(start, comma - start);
    SynthTask t;
    if (name == "copy") t = SynthTask::copy;
    else if (name == "shift") t = SynthTask::shift;
    else if (name == "reverse") t = SynthTask::reverse;
    else if (name == "add") t = SynthTask::add;
    else if (name == "lookup") t = SynthTask::lookup;
    else SL_FAIL("synthetic task \"", name, "\" in \"", spec, "\" is unknown (use copy, shift, reverse, add, lookup, a comma list of them, or mix)");
    for (SynthTask seen : out) SL_CHECK(seen != t, "synthetic task \"", name, "\" is listed twice in \"", spec, "\"");
    out.push_back(t);
    start = comma + 1;
  }
  return out;
}

SynthSplit parse_synth_split(std::string_view name) {
  if (name == "all") return SynthSplit::all;
  if (name == "train") return SynthSplit::train;
  if (name == "test") return SynthSplit::test;
  SL_FAIL("synthetic data split \"", name, "\" is unknown (use all, train or test)");
}

std::string_view synth_instruction(SynthTask t) {
  switch (t) {
    case SynthTask::copy: return "Copy the letters.";
    case SynthTask::shift: return "Replace each letter by the next one in the alphabet.";
    case SynthTask::reverse: return "Reverse the letters.";
    case SynthTask::add: return "Add the two numbers.";
    case SynthTask::lookup: return "Give the value of the key after the bar.";
  }
  return "";
}

std::string synth_answer(SynthTask t, std::string_view input) {
  switch (t) {
    case SynthTask::copy: return std::string(input);
    case SynthTask::shift: {
      std::string out(input);
      for (char& c : out) {
        SL_CHECK(c >= 'a' && c <= 'z', "synthetic task shift: input \"", input, "\" has a character that is not a-z");
        c = c == 'z' ? 'a' : static_cast<char>(c + 1);
      }
      return out;
    }
    case SynthTask::reverse: return std::string(input.rbegin(), input.rend());
    case SynthTask::add: {
      const size_t plus = input.find('+');
      SL_CHECK(plus != std::string_view::npos, "synthetic task add: input \"", input, "\" has no '+'");
      return std::to_string(parse_operand(input.substr(0, plus), input) + parse_operand(input.substr(plus + 1), input));
    }
    case SynthTask::lookup: {
      const size_t bar = input.rfind(" | ");
      SL_CHECK(bar != std::string_view::npos, "synthetic task lookup: input \"", input, "\" has no \" | \"");
      const std::string needle = std::string(input.substr(bar + 3)) + "=";
      std::string_view pairs = input.substr(0, bar);
      for (size_t at = 0; at < pairs.size();) {
        size_t end = pairs.find(' ', at);
        if (end == std::string_view::npos) end = pairs.size();
        std::string_view pair = pairs.substr(at, end - at);
        if (pair.starts_with(needle)) return std::string(pair.substr(needle.size()));
        at = end + 1;
      }
      SL_FAIL("synthetic task lookup: input \"", input, "\" does not hold its key \"", input.substr(bar + 3), "\"");
    }
  }
  return {};
}

bool in_test_split(const SynthExample& e) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  };
  mix(e.instruction);
  mix("\n");
  mix(e.input);
  return h % 10 == 0;
}

std::vector<SynthExample> generate_synthetic(const SynthOptions& options) {
  SL_CHECK(!options.tasks.empty(), "generate_synthetic: no tasks given");
  SL_CHECK(options.n >= 0, "generate_synthetic: n must be >= 0, got ", options.n);
  SplitMix64 rng(options.seed);
  std::vector<SynthExample> out;
  std::set<std::pair<std::string, std::string>> seen;  // (instruction, input)
  // Every task has far more than a million distinct inputs, so misses are rare; this bound only
  // turns an impossible request into an error instead of an endless loop.
  const int64_t max_draws = 100 * options.n + 1000000;
  for (int64_t draws = 0; static_cast<int64_t>(out.size()) < options.n; ++draws) {
    SL_CHECK(draws < max_draws, "generate_synthetic: could not find ", options.n, " distinct examples in ",
             max_draws, " draws");
    const SynthTask task = options.tasks[rng.below(options.tasks.size())];
    SynthExample e;
    e.instruction = synth_instruction(task);
    e.input = draw_input(task, rng);
    if (options.split != SynthSplit::all && in_test_split(e) != (options.split == SynthSplit::test)) continue;
    if (!seen.emplace(e.instruction, e.input).second) continue;
    e.output = synth_answer(task, e.input);
    out.push_back(std::move(e));
  }
  return out;
}

std::string synth_to_jsonl(const std::vector<SynthExample>& examples) {
  std::string out;
  for (const SynthExample& e : examples) {
    json::Value v = json::Value::object();
    v.set("instruction", e.instruction);
    v.set("input", e.input);
    v.set("output", e.output);
    out += json::dump(v);
    out += '\n';
  }
  return out;
}

}  // namespace shardlab::models
