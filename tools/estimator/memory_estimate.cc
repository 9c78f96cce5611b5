// Model state (parameters, gradients, optimizer state), communication buffers and activations per
// rank, following what the trainer and the data-parallel engine allocate (distributed/data_parallel.cc):
//   one rank, no engine: 16-bit gradients are handed to f32 master gradients one by one (peak 4 psi).
//   engine: gradients are copied into flat buckets in the reduce dtype (= parameter dtype); ZeRO-2/3 keep
//   only their 1/N shard; masters get an f32 copy of the own shard; ZeRO-1/2 gather updated parameters
//   in buffers of (1 + 1/N) of the gathered size, all issued before any is waited on.
#include "tools/estimator/memory_estimate.h"

#include <algorithm>
#include <cstdio>

#include "distributed/zero_theory.h"

namespace shardlab::estimate {

namespace {

dist::OptimizerStateKind state_kind(OptimizerKind o) {
  switch (o) {
    case OptimizerKind::adamw: return dist::OptimizerStateKind::adamw;
    case OptimizerKind::adamw_8bit: return dist::OptimizerStateKind::adamw_8bit;
    case OptimizerKind::sgd: return dist::OptimizerStateKind::sgd;
  }
  return dist::OptimizerStateKind::adamw;
}

bool targets(const EstimateSetup& s, const char* proj) {
  return s.lora_targets.empty() || std::find(s.lora_targets.begin(), s.lora_targets.end(), proj) != s.lora_targets.end();
}

// NOTE [checkpointed input gradients]: autograd/checkpoint.cc runs each layer's backward against a
// detached copy of its input and returns that input's .grad, which AccumulateGrad (autograd/node.cc)
// allocates under the gradient tag. So during layer l's backward the gradient tag also holds the
// gradient arriving at its output (from layer l+1's checkpoint, for l < L-1) and, at its end, its
// input's gradient (unless the input needs none: layer 0 under a frozen embedding), BTH*s each.
// Without an engine the other gradients stay (in the compute dtype: masters take them over only after
// backward), so the tag peaks at the end of layer 0's backward (full: every gradient but the
// embedding's) or of layer 1's (adapters: all but layer 0's).
struct CheckpointGradients {
  double input_grads = 0;        // most input gradients alive at once, bytes
  double before_last_grads = 0;  // one rank: the gradient tag at that moment
};
CheckpointGradients checkpoint_gradients(const EstimateSetup& setup, const ParameterCounts& n) {
  CheckpointGradients c;
  if (!setup.gradient_checkpointing) return c;
  const models::LlamaConfig& m = setup.model;
  const double s = compute_bytes(setup.precision), L = m.num_hidden_layers;
  const double bth = static_cast<double>(setup.micro_batch_size) * setup.sequence_len * m.hidden_size * s;
  if (setup.adapter == AdapterKind::none) {
    c.input_grads = std::min(L, 2.0) * bth;
    c.before_last_grads = (n.trained - static_cast<double>(m.vocab_size) * m.hidden_size) * s + c.input_grads;
  } else {
    const double at_layer0 = L >= 2 ? n.trained * s + bth : 0;
    const double at_layer1 = L >= 3 ? (n.trained - n.largest_layer) * s + 2 * bth : 0;
    c.input_grads = (L >= 3 ? 2 : L >= 2 ? 1 : 0) * bth;
    c.before_last_grads = std::max(at_layer0, at_layer1);
  }
  return c;
}

}  // namespace

ParameterCounts count_parameters(const EstimateSetup& setup) {
  const models::LlamaConfig& c = setup.model;
  const double H = c.hidden_size, I = c.intermediate_size, d = c.resolved_head_dim();
  const double q = c.num_attention_heads * d, kv = c.num_key_value_heads * d, L = c.num_hidden_layers;
  ParameterCounts n;
  n.largest_tensor = setup.adapter == AdapterKind::none ? std::max(c.vocab_size * H, H * I)
                                                         : static_cast<double>(setup.lora_r) * std::max(H, I);
  n.total = static_cast<double>(c.num_parameters());
  const double layer_proj = 2 * H * q + 2 * H * kv + 3 * H * I;
  n.projections = L * layer_proj;
  if (setup.adapter == AdapterKind::none) {
    n.trained = n.total;
    n.largest_layer = layer_proj + 2 * H;
    n.root_unit = n.total - L * n.largest_layer;
    return n;
  }
  SL_CHECK(setup.lora_r >= 1, "estimate: lora_r ", setup.lora_r, " must be >= 1");
  const struct {
    const char* name;
    double in, out;
  } projs[] = {{"q_proj", H, q}, {"k_proj", H, kv}, {"v_proj", H, kv}, {"o_proj", q, H},
               {"gate_proj", H, I}, {"up_proj", H, I}, {"down_proj", I, H}};
  double per_layer = 0;
  for (const auto& p : projs)
    if (targets(setup, p.name)) per_layer += static_cast<double>(setup.lora_r) * (p.in + p.out);
  SL_CHECK(per_layer > 0, "estimate: lora_targets select no decoder projection");
  n.largest_layer = per_layer;
  n.trained = L * per_layer;
  return n;
}

double MemoryEstimate::device_total() const {
  double t = 0;
  for (double b : device) t += b;
  return t;
}

MemoryEstimate estimate_memory(const EstimateSetup& setup) {
  MemoryEstimate e;
  e.setup = setup;
  e.counts = count_parameters(setup);
  const ParameterCounts& n = e.counts;
  const int G = setup.shard_group_size();
  const dist::ShardingPlan plan = dist::ShardingPlan::of(setup.preset);
  const bool masters = setup.precision != Precision::f32, engine = setup.world_size > 1;
  const double s = compute_bytes(setup.precision), psi = n.trained;
  // Parameter offload implies the optimizer's (as the engine does it, and FSDP's CPUOffload): the
  // optimizer steps where the shards are.
  const bool offload_optimizer = setup.offload_optimizer || setup.offload_params;
  SL_CHECK(!setup.offload_params || plan.shard_parameters, "estimate: offload_params needs a preset that shards "
           "parameters (zero3, fsdp_full_shard, fsdp_hybrid_shard), not ", dist::preset_name(setup.preset));
  auto add = [&](MemTag tag, const std::string& name, double bytes, const std::string& formula) {
    e.device[static_cast<int>(tag)] += bytes;
    e.terms.push_back({name, bytes, formula});
  };
  auto to_cpu = [&](const std::string& name, double bytes, const std::string& formula) {
    e.cpu += bytes;
    e.terms.push_back({"cpu: " + name, bytes, formula});
  };

  // Parameters: frozen base (LoRA: compute dtype; QLoRA: NF4 projections) + the trained ones, 1/G
  // when sharded; zero3/hybrid also hold (prefetch + 1) gathered units while they compute.
  double frozen = 0;
  if (setup.adapter == AdapterKind::lora) frozen = n.total * s;
  if (setup.adapter == AdapterKind::qlora) frozen = n.projections * kNf4BytesPerParam + (n.total - n.projections) * s;
  if (frozen > 0) add(MemTag::parameter, "frozen base", frozen, "lora: P*s; qlora: projections*0.5159 + rest*s");
  const double trained_params = psi * s / (plan.shard_parameters ? G : 1);
  if (setup.offload_params) to_cpu("parameter shards", trained_params, "psi*s/G");
  else add(MemTag::parameter, "trained parameters", trained_params, plan.shard_parameters ? "psi*s/G" : "psi*s");
  if (plan.shard_parameters && engine) {
    const double unit = std::max(n.largest_layer * (setup.prefetch_depth + 1), n.root_unit);
    add(MemTag::communication, "gathered units", unit * s, "max((prefetch+1)*layer unit, root unit)*s");
  }

  // Gradients in the reduce dtype (the parameters'), then f32 master gradients of the own shard.
  const double opt_share = plan.shard_optimizer_state && engine ? G : 1;
  const CheckpointGradients ckpt = checkpoint_gradients(setup, n);
  if (!engine) {
    // The 16-bit gradients are handed one by one to f32 master gradients: 4 psi plus the largest
    // 16-bit gradient still waiting.
    const double done = masters ? psi * 4 + n.largest_tensor * s : psi * s;
    if (ckpt.before_last_grads > 0 && ckpt.before_last_grads > done)
      add(MemTag::gradient, "gradients (checkpointing peak)", ckpt.before_last_grads,
          "checkpointed layer's input gradients (BTH*s each) + the gradients done by then");
    else add(MemTag::gradient, "gradients", done, masters ? "psi*4 + largest trained tensor*s" : "psi*4");
  } else {
    const double grads = psi * s / (plan.shard_gradients ? G : 1);
    if (setup.offload_params) to_cpu("gradient shards", grads, "psi*s/G");
    else add(MemTag::gradient, "gradient buckets", grads, plan.shard_gradients ? "psi*s/G" : "psi*s");
    // During backward each parameter's full-size .grad lives until it is copied into its bucket (ZeRO-3:
    // until its unit's reduce-scatter; the root unit reduces last, after the embedding, so the lm_head
    // and norm gradients wait next to one layer unit's); the f32 master gradients of the own shard
    // exist only from the optimizer step on, when those are gone: the tag holds the larger of the two.
    const double embedding = setup.adapter == AdapterKind::none ? static_cast<double>(setup.model.vocab_size) * setup.model.hidden_size : 0;
    const double in_flight = std::max(ckpt.input_grads, plan.shard_parameters
                                                            ? (n.largest_layer + std::max(0.0, n.root_unit - embedding)) * s
                                                            : n.largest_tensor * s);
    const double master_grads = masters && !offload_optimizer ? psi * 4 / opt_share : 0;
    if (masters && offload_optimizer) to_cpu("master gradients", psi * 4 / opt_share, "psi*4/shards");
    if (master_grads >= in_flight) add(MemTag::gradient, "master gradients", master_grads, "psi*4/shards (f32 copy of the own shard)");
    else add(MemTag::gradient, "gradients in flight", in_flight,
             plan.shard_parameters ? "(layer unit + root unit - embedding)*s" : "max(largest trained tensor*s, checkpointed input gradients)");
  }

  // Optimizer state: K bytes per trained parameter (AdamW 8, 8-bit 2+8/256, SGD 0; +4 masters).
  const double K = dist::optimizer_bytes_per_param(state_kind(setup.optimizer), masters);
  if (offload_optimizer) to_cpu("optimizer state", psi * K / opt_share, "psi*K/shards");
  else add(MemTag::optimizer_state, "optimizer state", psi * K / opt_share, "psi*K/shards");

  // Communication buffers (engine only): ZeRO-1 reduce-scatters each bucket into a fresh shard;
  // ZeRO-1/2 gather every updated shard at once ((1 + 1/G) psi s); ZeRO-2/3 hold full-size bucket
  // buffers until their reduce-scatter finishes (one bucket at least).
  if (engine) {
    const double bucket = std::min(psi, static_cast<double>(setup.resolved_bucket_elements()));
    if (setup.preset == dist::Preset::zero1 || setup.preset == dist::Preset::zero2)
      add(MemTag::communication, "parameter all-gather", psi * s * (1.0 + 1.0 / G), "psi*s*(1 + 1/G)");
    if (plan.shard_gradients) add(MemTag::communication, "reduce-scatter bucket", bucket * s, "bucket*s");
  }

  e.activations = estimate_activations(setup);
  e.device[static_cast<int>(MemTag::activation)] = e.activations.peak;
  e.device[static_cast<int>(MemTag::workspace)] = e.activations.workspace_peak;
  return e;
}

std::string estimate_table(const std::vector<MemoryEstimate>& rows, bool verbose) {
  static constexpr MemTag kTags[] = {MemTag::parameter, MemTag::gradient, MemTag::optimizer_state,
                                     MemTag::activation, MemTag::communication, MemTag::workspace};
  double largest = 0;
  for (const MemoryEstimate& e : rows) largest = std::max(largest, e.device_total() + e.cpu);
  const bool use_gib = largest >= 4.0 * (1 << 30);
  const double unit = use_gib ? 1024.0 * 1024.0 * 1024.0 : 1024.0 * 1024.0;
  std::string out;
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-48s", use_gib ? "estimate per rank (GiB)" : "estimate per rank (MiB)");
  out += buf;
  for (MemTag t : kTags) {
    std::snprintf(buf, sizeof buf, " %15s", mem_tag_name(t));
    out += buf;
  }
  out += "             cpu    device total\n";
  for (const MemoryEstimate& e : rows) {
    std::string name = std::string(dist::preset_name(e.setup.preset)) + " N=" + std::to_string(e.setup.world_size) +
                       " " + precision_name(e.setup.precision) + (e.setup.gradient_checkpointing ? " ckpt" : "") +
                       " " + optimizer_name(e.setup.optimizer) + " " + adapter_name(e.setup.adapter);
    std::snprintf(buf, sizeof buf, "%-48s", name.c_str());
    out += buf;
    for (MemTag t : kTags) {
      std::snprintf(buf, sizeof buf, " %15.3f", e.of(t) / unit);
      out += buf;
    }
    std::snprintf(buf, sizeof buf, " %15.3f %15.3f\n", e.cpu / unit, e.device_total() / unit);
    out += buf;
  }
  if (!verbose) return out;
  for (const MemoryEstimate& e : rows) {
    std::snprintf(buf, sizeof buf, "\n# %s N=%d: psi = %.0f trained of %.0f parameters\n", dist::preset_name(e.setup.preset),
                  e.setup.world_size, e.counts.trained, e.counts.total);
    out += buf;
    for (const std::vector<Term>* list : {&e.terms, &e.activations.terms})
      for (const Term& t : *list) {
        std::snprintf(buf, sizeof buf, "#   %-30s %14.3f  %s\n", t.name.c_str(), t.bytes / unit, t.formula.c_str());
        out += buf;
      }
  }
  return out;
}

}  // namespace shardlab::estimate
