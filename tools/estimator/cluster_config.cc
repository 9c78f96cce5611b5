// Strict YAML reading of a cluster description: every key is known, every number positive.
#include "tools/estimator/cluster_config.h"

#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "core/error.h"

namespace shardlab::estimate {

namespace {

// The mapping `node` at `path`, with every key checked against `known`.
void check_keys(const YAML::Node& node, const std::string& path, const std::set<std::string>& known,
                const std::string& source) {
  SL_CHECK(node.IsMap(), source, ": ", path.empty() ? "the file" : path, " must be a mapping");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    if (!known.contains(key)) {
      std::string list;
      for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
      SL_FAIL(source, ": unknown key '", path.empty() ? key : path + "." + key, "' (known: ", list, ")");
    }
  }
}

double positive(const YAML::Node& parent, const std::string& key, const std::string& path, const std::string& source) {
  const YAML::Node v = parent[key];
  SL_CHECK(v.IsDefined() && v.IsScalar(), source, ": missing number '", path + key, "'");
  double x = 0;
  try {
    x = v.as<double>();
  } catch (const YAML::Exception&) {
    SL_FAIL(source, ": '", path + key, "' must be a number, got '", v.as<std::string>(), "'");
  }
  SL_CHECK(x > 0, source, ": '", path + key, "' must be positive, got ", x);
  return x;
}

Link link(const YAML::Node& node, const std::string& name, const std::string& source) {
  check_keys(node, name, {"latency_us", "bandwidth_GBps"}, source);
  return {positive(node, "latency_us", name + ".", source) * 1e-6, positive(node, "bandwidth_GBps", name + ".", source) * 1e9};
}

}  // namespace

ClusterConfig parse_cluster_yaml(const std::string& text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    SL_FAIL(source, ": not valid YAML: ", e.what());
  }
  check_keys(root, "", {"name", "nodes", "gpus_per_node", "peak_tflops", "compute_efficiency", "memory_gib",
                        "intra_node", "inter_node"}, source);
  ClusterConfig c;
  c.name = root["name"] ? root["name"].as<std::string>() : source;
  c.nodes = static_cast<int>(positive(root, "nodes", "", source));
  c.gpus_per_node = static_cast<int>(positive(root, "gpus_per_node", "", source));
  c.peak_tflops = positive(root, "peak_tflops", "", source);
  c.compute_efficiency = root["compute_efficiency"] ? positive(root, "compute_efficiency", "", source) : 1.0;
  SL_CHECK(c.compute_efficiency <= 1.0, source, ": 'compute_efficiency' must be <= 1, got ", c.compute_efficiency);
  c.memory_gib = root["memory_gib"] ? positive(root, "memory_gib", "", source) : 0.0;
  SL_CHECK(root["intra_node"].IsDefined(), source, ": missing 'intra_node'");
  c.intra_node = link(root["intra_node"], "intra_node", source);
  if (c.nodes > 1) {
    SL_CHECK(root["inter_node"].IsDefined(), source, ": 'inter_node' is required when nodes > 1");
    c.inter_node = link(root["inter_node"], "inter_node", source);
  } else if (root["inter_node"].IsDefined()) {
    c.inter_node = link(root["inter_node"], "inter_node", source);
  }
  return c;
}

ClusterConfig load_cluster_config(const std::string& path) {
  std::ifstream in(path);
  SL_CHECK(in.good(), "cluster file '", path, "' cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_cluster_yaml(ss.str(), path);
}

}  // namespace shardlab::estimate
