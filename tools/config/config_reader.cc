// Typed reads out of yaml-cpp nodes for the train config, and the key checks (unknown, duplicate,
// not supported yet) with their one-line errors.
#include "tools/config/config_reader.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "core/error.h"

namespace shardlab::config::detail {

namespace {

// Hints for not-yet-supported Axolotl keys that have a supported counterpart here.
std::string unsupported_hint(std::string_view key) {
  static const std::map<std::string_view, std::string_view> hints{
      {"tokenizer_config", "tokenizer"}, {"evals_per_epoch", "eval_steps"}, {"float16", "fp16"}};
  const auto it = hints.find(key);
  return it == hints.end() ? std::string() : "; use '" + std::string(it->second) + "'";
}

// A feature key that is present but switched off: empty, false, or an empty list or map.
bool switched_off(const YAML::Node& v) {
  if (v.IsNull()) return true;
  if (v.IsSequence() || v.IsMap()) return v.size() == 0;
  const std::string s = lowercase(v.Scalar());
  return s.empty() || s == "false";
}

}  // namespace

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

const Field* Section::find(std::string_view key) const {
  for (const Field& f : fields)
    if (f.key.Scalar() == key) return &f;
  return nullptr;
}

std::string describe(const YAML::Node& node) {
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a map";
  if (node.IsNull()) return "nothing";
  return "'" + node.Scalar() + "'";
}

void Reader::fail(const std::string& message) const { SL_FAIL(source_, ": ", message); }

void Reader::fail(const YAML::Mark& mark, const std::string& message) const {
  if (mark.is_null() || mark.line < 0) fail(message);
  SL_FAIL(source_, ":", mark.line + 1, ":", mark.column + 1, ": ", message);
}

void Reader::fail_at(const YAML::Node& node, const std::string& message) const {
  fail(node.Mark(), message);
}

Section Reader::section(const YAML::Node& map, const std::string& path, const KeySet& keys) const {
  const std::string where = path.empty() ? "" : " in " + path;
  if (!map.IsMap())
    fail_at(map, (path.empty() ? "the config" : path) + " must be a map of settings, got " + describe(map));
  Section out;
  std::map<std::string, YAML::Mark> seen;
  for (const auto& entry : map) {
    const YAML::Node key = entry.first;
    const YAML::Node value = entry.second;
    if (!key.IsScalar()) fail_at(key, "keys" + where + " must be plain names, got " + describe(key));
    const std::string name = key.Scalar();
    if (const auto first = seen.find(name); first != seen.end())
      fail_at(key, "duplicate key '" + name + "'" + where + " (first given on line " +
                       std::to_string(first->second.line + 1) + ")");
    seen.emplace(name, key.Mark());

    if (keys.is_unsupported(name)) {
      if (switched_off(value)) continue;
      fail_at(key, "'" + name + "'" + where + " is not supported yet" + unsupported_hint(name));
    }
    if (!keys.is_known(name)) {
      std::string message = "unknown key '" + name + "'" + where;
      if (const auto suggestion = closest_key(name, keys)) {
        message += " (did you mean '" + std::string(*suggestion) + "'?)";
      } else if (path.empty()) {
        // A nested section's key written at the top level: say where it goes.
        if (dataset_keys().is_known(name)) message += " (it belongs in a datasets entry)";
        else if (model_config_keys().is_known(name)) message += " (it belongs under model_config)";
        else if (generate_keys().is_known(name)) message += " (it belongs under generate_after_training)";
      }
      fail_at(key, message);
    }
    if (value.IsNull()) continue;
    out.fields.push_back({path.empty() ? name : path + "." + name, key, value});
  }
  return out;
}

std::string Reader::scalar(const Field& f, const std::string& expected) const {
  if (!f.value.IsScalar()) fail_at(f.value, f.path + " must be " + expected + ", got " + describe(f.value));
  return f.value.Scalar();
}

int64_t Reader::integer(const Field& f, int64_t min) const {
  const std::string expected = min == 1   ? "a positive integer"
                               : min == 0 ? "a non-negative integer"
                                          : "an integer >= " + std::to_string(min);
  const std::string text = scalar(f, expected);
  int64_t value = 0;
  const char* begin = text.data() + (text.starts_with('+') ? 1 : 0);
  const auto [end, ec] = std::from_chars(begin, text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || begin == end || value < min)
    fail_at(f.value, f.path + " must be " + expected + ", got '" + text + "'");
  return value;
}

double Reader::number(const Field& f) const {
  const std::string text = scalar(f, "a number");
  double value = 0;
  const char* begin = text.data() + (text.starts_with('+') ? 1 : 0);
  const auto [end, ec] = std::from_chars(begin, text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || begin == end || !std::isfinite(value))
    fail_at(f.value, f.path + " must be a number, got '" + text + "'");
  return value;
}

bool Reader::boolean(const Field& f) const {
  const std::string text = scalar(f, "true or false");
  const std::string lower = lowercase(text);
  if (lower == "true") return true;
  if (lower == "false") return false;
  fail_at(f.value, f.path + " must be true or false, got '" + text + "'");
}

std::string Reader::string(const Field& f) const { return scalar(f, "a string"); }

}  // namespace shardlab::config::detail
