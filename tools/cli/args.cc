// Subcommand option parsing.
#include "tools/cli/args.h"

#include <charconv>

#include "core/error.h"
#include "tools/config/config_keys.h"

namespace shardlab::cli {

Args::Args(const std::string& command, const std::map<std::string, bool>& spec, const std::vector<std::string>& argv)
    : command_(command) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (!a.starts_with("--")) {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    auto it = spec.find(name);
    if (it == spec.end()) {
      std::string best;
      size_t best_d = 4;
      for (auto& [known, takes] : spec) {
        size_t d = config::detail::edit_distance(name, known);
        if (d < best_d) best_d = d, best = known;
      }
      SL_FAIL("shardlab ", command_, ": unknown option '--", name, "'", best.empty() ? "" : " (did you mean '--" + best + "'?)");
    }
    if (it->second && value.empty()) {
      SL_CHECK(i + 1 < argv.size(), "shardlab ", command_, ": option '--", name, "' needs a value");
      value = argv[++i];
    }
    values_[name] = it->second ? value : "true";
  }
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::string Args::required(const std::string& name) const {
  SL_CHECK(has(name), "shardlab ", command_, ": missing required option '--", name, "'");
  return values_.at(name);
}

int64_t Args::get_int(const std::string& name, int64_t fallback) const {
  if (!has(name)) return fallback;
  const std::string& v = values_.at(name);
  int64_t out = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  SL_CHECK(ec == std::errc() && ptr == v.data() + v.size(), "shardlab ", command_, ": '--", name,
           "' must be an integer, got '", v, "'");
  return out;
}

double Args::get_double(const std::string& name, double fallback) const {
  if (!has(name)) return fallback;
  const std::string& v = values_.at(name);
  try {
    size_t used = 0;
    double out = std::stod(v, &used);
    if (used == v.size()) return out;
  } catch (const std::exception&) {
  }
  SL_FAIL("shardlab ", command_, ": '--", name, "' must be a number, got '", v, "'");
}

}  // namespace shardlab::cli
