// A cluster description for `shardlab simulate`: GPUs per node, compute peak and efficiency, and
// the alpha-beta figures (latency, bandwidth) of the intra-node and inter-node links, from YAML.
#pragma once

#include <string>

namespace shardlab::estimate {

struct Link {
  double latency_s = 0;        // alpha: per message step
  double bandwidth_Bps = 0;    // beta: bytes per second one rank sends over the link
};

struct ClusterConfig {
  std::string name;
  int nodes = 1;
  int gpus_per_node = 1;
  double peak_tflops = 0;          // dense peak of one device in the compute dtype
  double compute_efficiency = 1;   // achieved / peak (measured: 1-rank step FLOPs / time / peak)
  double memory_gib = 0;           // per device (0: not checked)
  Link intra_node;
  Link inter_node;
  int world_size() const { return nodes * gpus_per_node; }
};

// Keys: name, nodes, gpus_per_node, peak_tflops, compute_efficiency, memory_gib,
// intra_node: {latency_us, bandwidth_GBps}, inter_node: {latency_us, bandwidth_GBps} (inter_node
// required when nodes > 1). An unknown key, a missing one or a non-positive number is an error
// naming the file and the key.
ClusterConfig parse_cluster_yaml(const std::string& text, const std::string& source);
ClusterConfig load_cluster_config(const std::string& path);

}  // namespace shardlab::estimate
