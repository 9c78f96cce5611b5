// The estimator against hand-computed values: parameter counts (Llama-3-8B), ZeRO model-state bytes
// per preset, the activation terms of a small shape, ring alpha-beta times, and strict cluster files.
#include <gtest/gtest.h>

#include "core/error.h"
#include "tools/estimator/cluster_config.h"
#include "tools/estimator/memory_estimate.h"
#include "tools/estimator/step_time_model.h"

namespace shardlab::estimate {
namespace {

models::LlamaConfig llama3_8b() {
  models::LlamaConfig c;
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  return c;
}

TEST(Estimator, Llama3_8BZeroModelStatesMatchThePaper) {
  EstimateSetup s;
  s.model = llama3_8b();
  s.precision = Precision::bf16_masters;
  s.world_size = 8;
  const double psi = 8030261248.0;
  s.preset = dist::Preset::zero3;
  const MemoryEstimate z3 = estimate_memory(s);
  EXPECT_EQ(z3.counts.trained, psi);
  EXPECT_DOUBLE_EQ(z3.of(MemTag::parameter), 2 * psi / 8);
  EXPECT_DOUBLE_EQ(z3.of(MemTag::optimizer_state), 12 * psi / 8);
  EXPECT_DOUBLE_EQ(z3.of(MemTag::gradient), 2 * psi / 8 + 4 * psi / 8);  // bf16 shard + f32 master shard
  // Parameter offload moves every shard to the host, and the optimizer with it (as the engine does):
  // bf16 parameter and gradient shards, f32 master gradients, masters and AdamW's moments.
  s.offload_params = true;
  const MemoryEstimate z3off = estimate_memory(s);
  EXPECT_DOUBLE_EQ(z3off.of(MemTag::parameter), 0.0);
  EXPECT_DOUBLE_EQ(z3off.of(MemTag::optimizer_state), 0.0);
  EXPECT_DOUBLE_EQ(z3off.cpu, (2 + 2 + 4 + 12) * psi / 8);
  s.offload_params = false;
  s.preset = dist::Preset::ddp;
  const MemoryEstimate ddp = estimate_memory(s);
  EXPECT_DOUBLE_EQ(ddp.of(MemTag::optimizer_state), 12 * psi);
  EXPECT_DOUBLE_EQ(ddp.of(MemTag::communication), 0.0);
  s.offload_optimizer = true;
  const MemoryEstimate off = estimate_memory(s);
  EXPECT_DOUBLE_EQ(off.of(MemTag::optimizer_state), 0.0);
  EXPECT_DOUBLE_EQ(off.cpu, 12 * psi + 4 * psi);
  s.offload_params = true;
  EXPECT_THROW(estimate_memory(s), Error);  // ddp does not shard parameters
}

TEST(Estimator, ActivationsOfASmallShapeByHand) {
  EstimateSetup s;
  s.model.vocab_size = 100;
  s.model.hidden_size = 8;
  s.model.intermediate_size = 16;
  s.model.num_hidden_layers = 2;
  s.model.num_attention_heads = 2;
  s.model.num_key_value_heads = 1;
  s.micro_batch_size = 1;
  s.sequence_len = 4;
  const ActivationEstimate a = estimate_activations(s);
  // Per token, f32 (head_dim 4: q 8, kv 4): (4*8 + 3*8 + 2*4 + 3*16) * 4 + (2 + 2) * 4 = 448 + 16 = 464 bytes; 4 tokens.
  EXPECT_DOUBLE_EQ(a.saved_per_layer, 4 * 464.0);
  // Head: 4 * (2*8*4 + 4 + 16) + 3 * 101 * 4.
  EXPECT_DOUBLE_EQ(a.saved_head, 4 * 84.0 + 1212.0);
  // Peak: saved + the (4 x 100) f32 logits (4 * 100 * 4 = 1600 > layer transient 4 * 40 * 4 = 640 - head).
  EXPECT_DOUBLE_EQ(a.peak, 2 * 1856.0 + 1548.0 + 1600.0);
}

TEST(StepTimeModel, RingAlphaBetaByHand) {
  const Link link{1e-5, 1e9};  // 10 us, 1 GB/s
  // all-reduce of 1 MB over 4 ranks: 2*3*10us + 2*3/4 * 1e6 / 1e9 = 60 us + 1.5 ms.
  EXPECT_NEAR(ring_seconds(dist::CollectiveKind::all_reduce, 1e6, 4, link), 60e-6 + 1.5e-3, 1e-12);
  EXPECT_NEAR(ring_seconds(dist::CollectiveKind::reduce_scatter, 1e6, 4, link), 30e-6 + 0.75e-3, 1e-12);
  EXPECT_NEAR(ring_seconds(dist::CollectiveKind::all_gather, 1e6, 2, link), 10e-6 + 0.5e-3, 1e-12);
  EXPECT_EQ(ring_seconds(dist::CollectiveKind::all_reduce, 1e6, 1, link), 0.0);
}

TEST(StepTimeModel, GroupsBeyondANodeUseTheInterNodeLink) {
  ClusterConfig c = parse_cluster_yaml(
      "nodes: 2\ngpus_per_node: 4\npeak_tflops: 100\nintra_node: {latency_us: 1, bandwidth_GBps: 100}\n"
      "inter_node: {latency_us: 5, bandwidth_GBps: 10}\n", "test.yaml");
  EXPECT_DOUBLE_EQ(link_for_group(c, 4).bandwidth_Bps, 100e9);
  EXPECT_DOUBLE_EQ(link_for_group(c, 8).latency_s, 5e-6);
}

// A sweep laid out exactly on alpha = 75 us, beta = 2 GB/s (2 ranks: t = 2 alpha + x / beta) gives
// them back; a sweep whose largest size is 30% slow still yields the small-size latency within 5%
// (a plain least-squares fit follows the largest time: its intercept comes out at -249 us).
TEST(StepTimeModel, CalibrationFitsOnRelativeError) {
  std::vector<double> xs, ts;
  for (double bytes = 4096; bytes <= 64.0 * (1 << 20); bytes *= 4) {
    xs.push_back(bytes);
    ts.push_back(150e-6 + bytes / 2e9);
  }
  const LinearFit exact = fit_relative(xs, ts);
  EXPECT_NEAR(exact.intercept, 150e-6, 1e-12);
  EXPECT_NEAR(1.0 / exact.slope, 2e9, 1e-3);
  ts.back() *= 1.3;
  const LinearFit skewed = fit_relative(xs, ts);
  EXPECT_NEAR(skewed.intercept, 150e-6, 7.5e-6);
  EXPECT_THROW(fit_relative({1.0}, {1.0}), Error);
  EXPECT_THROW(fit_relative({1.0, 1.0}, {1.0, 2.0}), Error);
}

void expect_error(const std::string& yaml, const std::string& needle) {
  try {
    parse_cluster_yaml(yaml, "bad.yaml");
    FAIL() << "no error for: " << yaml;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ClusterConfig, BadFilesFailNamingTheKey) {
  const std::string ok = "nodes: 1\ngpus_per_node: 2\npeak_tflops: 1\nintra_node: {latency_us: 1, bandwidth_GBps: 1}\n";
  EXPECT_NO_THROW(parse_cluster_yaml(ok, "ok.yaml"));
  expect_error(ok + "gpus_per_nod: 3\n", "unknown key 'gpus_per_nod'");
  expect_error("nodes: 1\ngpus_per_node: 2\npeak_tflops: 1\nintra_node: {latency_us: 1, bandwith_GBps: 1}\n",
               "unknown key 'intra_node.bandwith_GBps'");
  expect_error("nodes: 1\ngpus_per_node: 2\nintra_node: {latency_us: 1, bandwidth_GBps: 1}\n", "missing number 'peak_tflops'");
  expect_error("nodes: 2\ngpus_per_node: 2\npeak_tflops: 1\nintra_node: {latency_us: 1, bandwidth_GBps: 1}\n",
               "'inter_node' is required");
  expect_error("nodes: 1\ngpus_per_node: 2\npeak_tflops: -3\nintra_node: {latency_us: 1, bandwidth_GBps: 1}\n",
               "'peak_tflops' must be positive");
  expect_error("nodes: [1\n", "not valid YAML");
}

}  // namespace
}  // namespace shardlab::estimate
