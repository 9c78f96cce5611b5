// Internal to tools/config: the keys each section of a train config knows, the Axolotl keys that
// are recognised but not supported yet, and the "did you mean" suggestion for a misspelt key.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

namespace shardlab::config::detail {

struct KeySet {
  std::string_view where;  // how errors name the section: "", "datasets[i]", "model_config", ...
  std::vector<std::string_view> known;
  std::vector<std::string_view> unsupported;  // recognised, rejected unless empty or false

  bool is_known(std::string_view key) const;
  bool is_unsupported(std::string_view key) const;
};

const KeySet& top_level_keys();
const KeySet& dataset_keys();
const KeySet& custom_format_keys();  // the keys of a map-valued dataset `type:` (Axolotl's form)
const KeySet& model_config_keys();
const KeySet& generate_keys();
const KeySet& fsdp_config_keys();  // each key with and without the `fsdp_` prefix

// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
// neighbouring characters cost 1 each ("learnig_rate" and "feild" are both one away).
std::size_t edit_distance(std::string_view a, std::string_view b);

// The known or unsupported key of `keys` closest to `key`, when it is close enough to be a typo:
// at most a third of the key's length away (and at least 1, at most 3 edits).
std::optional<std::string_view> closest_key(std::string_view key, const KeySet& keys);

}  // namespace shardlab::config::detail
