// Internal to tools/config: typed reads out of yaml-cpp nodes. Every failure is one line naming the
// source file, line:column (1-based) when the node has a position, and the key's full path.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "tools/config/config_keys.h"

namespace shardlab::config::detail {

// One key: value of a mapping. `path` names it in errors ("learning_rate", "datasets[1].type").
struct Field {
  std::string path;
  YAML::Node key;
  YAML::Node value;
};

// The non-empty entries of a mapping, all checked to be known keys.
struct Section {
  std::vector<Field> fields;
  const Field* find(std::string_view key) const;  // by the bare key, null when absent or empty
};

std::string lowercase(std::string s);

// Human-readable kind of a non-scalar node for "got ..." messages: "a list", "a map".
std::string describe(const YAML::Node& node);

class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& message) const;
  [[noreturn]] void fail(const YAML::Mark& mark, const std::string& message) const;
  [[noreturn]] void fail_at(const YAML::Node& node, const std::string& message) const;

  // Checks `map` (a mapping, else an error naming `path`) against `keys`: no duplicates, no
  // unknown keys (suggesting the closest known one), no unsupported feature switched on. Entries
  // whose value is empty (null) are dropped: the default applies. `path` is "" at the top level.
  Section section(const YAML::Node& map, const std::string& path, const KeySet& keys) const;

  // An integer >= min; min 1 reads as "a positive integer", 0 as "a non-negative integer".
  int64_t integer(const Field& f, int64_t min) const;
  double number(const Field& f) const;  // finite
  bool boolean(const Field& f) const;   // true or false, any case
  std::string string(const Field& f) const;

  // One of `options` (name -> value); a name in `not_yet` gets "is not supported yet".
  template <typename E>
  E choice(const Field& f, std::initializer_list<std::pair<std::string_view, E>> options,
           std::initializer_list<std::string_view> not_yet = {}) const {
    const std::string text = scalar(f, "one of " + join(options));
    for (const auto& [name, value] : options)
      if (text == name) return value;
    for (std::string_view name : not_yet)
      if (text == name)
        fail_at(f.value, f.path + " '" + text + "' is not supported yet (supported: " + join(options) + ")");
    fail_at(f.value, f.path + " must be one of " + join(options) + "; got '" + text + "'");
  }

  const std::string& source() const { return source_; }

 private:
  // The scalar text of f, or an error saying f must be `expected`.
  std::string scalar(const Field& f, const std::string& expected) const;
  template <typename E>
  static std::string join(std::initializer_list<std::pair<std::string_view, E>> options) {
    std::string out;
    for (const auto& option : options) {
      if (!out.empty()) out += ", ";
      out += option.first;
    }
    return out;
  }

  std::string source_;
};

}  // namespace shardlab::config::detail
