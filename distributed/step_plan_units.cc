// The step plan of the presets that shard parameters (zero3 / fsdp_full_shard, fsdp_hybrid_shard):
// their units, laid out by ShardedUnits' rules (fsdp_unit.cc), and the gathers, reduce-scatters and
// replica all-reduces of one step (see step_plan.h).
#include <algorithm>
#include <unordered_map>

#include "core/error.h"
#include "distributed/step_plan.h"

namespace shardlab::dist {

namespace {

bool is_16bit(DType t) { return t == DType::bf16 || t == DType::f16; }

BucketLayout unit_layout(const std::vector<PlannedParameter>& params, const std::vector<int>& members, int shards) {
  BucketLayout L;
  for (int p : members) {
    L.slots.push_back({p, L.numel, params[p].numel});
    L.numel += params[p].numel;
  }
  L.padded_numel = (L.numel + shards - 1) / shards * shards;
  L.shard_numel = L.padded_numel / shards;
  return L;
}

}  // namespace

std::vector<PlannedUnit> plan_units(nn::Module& model, const std::vector<PlannedParameter>& params,
                                    const DataParallelOptions& options, int shard_group_size) {
  std::unordered_map<std::string, int> index;  // parameter name -> planned index
  for (size_t i = 0; i < params.size(); ++i) index.emplace(params[i].name, static_cast<int>(i));
  // The owner of every trained parameter: the outermost wrapped module holding it (hook k), else
  // the root (hook 0). A tied parameter is planned under its first name, as the engine keeps it.
  std::unordered_map<const TensorImpl*, int> by_tensor;
  for (const auto& [name, t] : model.named_parameters())
    if (auto it = index.find(name); it != index.end()) by_tensor.emplace(t.impl(), it->second);
  std::vector<int> owner(params.size(), 0);
  std::vector<std::string> hooks = {"<root>"};
  std::vector<std::string> wrapped;
  const auto& classes = options.transformer_layer_cls_to_wrap;
  for (auto& [prefix, m] : model.named_modules()) {
    if (m == &model || std::find(classes.begin(), classes.end(), m->type_name()) == classes.end()) continue;
    bool nested = false;
    for (const std::string& w : wrapped) nested |= prefix.rfind(w + ".", 0) == 0;
    if (nested) continue;
    wrapped.push_back(prefix);
    hooks.push_back(prefix);
    for (const auto& [name, t] : m->named_parameters())
      if (auto it = by_tensor.find(t.impl()); it != by_tensor.end()) owner[it->second] = static_cast<int>(hooks.size()) - 1;
  }
  std::vector<std::vector<int>> members(hooks.size());
  std::vector<int> persistent;
  for (size_t i = 0; i < params.size(); ++i)
    (params[i].numel < options.param_persistence_threshold ? persistent : members[owner[i]]).push_back(static_cast<int>(i));
  std::vector<PlannedUnit> units;
  int hook_index = 0;  // hook points without units (but the root) get no hooks: renumbered as the engine does
  for (size_t h = 0; h < hooks.size(); ++h) {
    if (h > 0 && members[h].empty()) continue;
    const int hook = h == 0 ? 0 : ++hook_index;
    if (options.wrap == WrapPolicy::per_parameter)
      for (int p : members[h]) units.push_back({params[p].name, hook, unit_layout(params, {p}, shard_group_size)});
    else if (!members[h].empty())
      units.push_back({hooks[h], hook, unit_layout(params, members[h], shard_group_size)});
  }
  if (!persistent.empty()) units.push_back({"<persistent>", -1, unit_layout(params, persistent, shard_group_size)});
  return units;
}

void detail::plan_sharded_step(const StepPlanInput& in, StepPlan& plan) {
  SL_CHECK(in.model != nullptr, "step plan: preset ", preset_name(in.options.preset),
           " shards parameters per unit of the model's modules: pass the model");
  const DataParallelOptions& o = in.options;
  const int world = in.world_size;
  const int S = o.preset == Preset::hybrid_shard && o.hybrid_shard_group_size > 0 ? o.hybrid_shard_group_size : world;
  SL_CHECK(world % S == 0, "step plan: hybrid_shard_group_size ", S, " does not divide the world size ", world);
  const int R = world / S;  // replicas (hybrid)
  plan.shard_group_size = S;
  for (const PlannedParameter& p : in.params) plan.psi += p.numel;
  plan.units = plan_units(*in.model, in.params, o, S);
  for (const PlannedUnit& u : plan.units) plan.buckets.push_back(u.layout);

  const int64_t pbytes = dtype_size(in.param_dtype), rbytes = dtype_size(plan.reduce_dtype);
  // Offload (NOTE [sharded units] in fsdp_unit.h): the optimizer on the host, with fp32 masters even
  // of f32 parameters that stay on the device; offload_param also the parameter and gradient shards.
  const bool offload_optimizer = o.offload_optimizer || o.offload_param;
  const bool masters = is_16bit(in.param_dtype) || (o.offload_optimizer && !o.offload_param);
  const std::string s = std::to_string(S), group = R > 1 ? "its shard group" : "all ranks";
  int64_t shards = 0, persistent_full = 0;
  for (const PlannedUnit& u : plan.units) {
    shards += u.layout.shard_numel;
    if (u.hook < 0) persistent_full += u.layout.padded_numel;
  }
  const auto unit_words = [&](int u, const char* what) {
    const PlannedUnit& U = plan.units[u];
    return "unit " + std::to_string(u) + " " + U.name + " " + what + " (" + std::to_string(U.layout.slots.size()) +
           " parameters, " + thousands(U.layout.numel) + " elements padded to " + thousands(U.layout.padded_numel) + ")";
  };
  const auto add_scalar = [&](std::vector<PlannedCollective>& out, int ranks, int values, const std::string& what) {
    if (ranks > 1) out.push_back(planned_collective(CollectiveKind::all_reduce, ranks, 8 * values, what));
  };

  const std::string on_host = " on the host";
  RankHoldings held;
  held.parameters = "own shard of every unit (1/" + s + ")" + (o.offload_param ? on_host : "") +
                    (persistent_full > 0 ? " + the persistent unit whole" : "");
  held.parameter_bytes = (shards + persistent_full) * pbytes;
  held.gradients = "own shard (1/" + s + ", " + dtype_name(plan.reduce_dtype) + ")" + (o.offload_param ? on_host : "");
  held.gradient_bytes = shards * rbytes;
  held.optimizer = masters ? "fp32 masters, own shard (1/" + s + ")" + (offload_optimizer ? on_host : "")
                           : "none yet (created by the first step)";
  held.optimizer_bytes = masters ? shards * 4 : 0;
  const auto host_bytes = [&](const RankHoldings& h) {
    return (o.offload_param ? shards * pbytes + h.gradient_bytes : 0) + (offload_optimizer ? h.optimizer_bytes : 0);
  };
  held.host_bytes = host_bytes(held);
  RankHoldings working = held;
  working.optimizer = (masters ? "fp32 masters + " : std::string()) + "optimizer state, own shard (1/" + s + ")" +
                      (offload_optimizer ? on_host : "");
  working.optimizer_bytes = static_cast<int64_t>(std::llround(optimizer_bytes_per_param(in.optimizer, masters) * shards));
  working.host_bytes = host_bytes(working);
  // The offload copies of one unit, in words.
  const auto copy = [&](int u, bool up, const char* what) {
    const int64_t n = plan.units[u].layout.shard_numel;
    return PlannedCopy{up, n * (up ? pbytes : rbytes), unit_words(u, what)};
  };

  StepPhase build{"build units", "", {}, held};
  build.what = "The " + thousands(plan.psi) + " trained elements are cut into " + std::to_string(plan.units.size()) +
               " units (" + std::string(o.wrap == WrapPolicy::per_parameter ? "one per parameter" : "one per wrapped layer") +
               ", the root's own parameters" + (persistent_full > 0 ? ", and the persistent small ones" : "") +
               "); each is broadcast from rank 0, then every rank keeps only its 1/" + s + " shard of it" +
               (R > 1 ? " (" + std::to_string(R) + " shard groups of " + s + " ranks replicate each other)" : "") + ".";
  if (o.broadcast_initial_parameters)
    for (int u = 0; u < static_cast<int>(plan.units.size()); ++u)
      build.collectives.push_back(planned_collective(CollectiveKind::broadcast, world,
                                                     plan.units[u].layout.padded_numel * pbytes,
                                                     unit_words(u, "parameters"), u, u + 1));
  plan.setup.push_back(build);

  StepPhase tokens{"count tokens", "The global token counts divide every rank's loss.", {}, working};
  add_scalar(tokens.collectives, world, 2, "token counts (2 x f64)");
  plan.step.push_back(tokens);

  StepPhase forward{"forward", "Before each unit's forward its shards are all-gathered within " + group +
                                   (o.forward_prefetch ? " (the next units' gathers are issued ahead, up to the prefetch bucket)" : "") +
                                   "; after it the gathered copy is freed, except the root's, which backward needs first.",
                    {}, working};
  for (int u = 0; u < static_cast<int>(plan.units.size()); ++u)
    if (plan.units[u].hook >= 0) {
      forward.collectives.push_back(planned_collective(CollectiveKind::all_gather, S, plan.units[u].layout.padded_numel * pbytes,
                                                       unit_words(u, "parameters"), u, u + 1));
      if (o.offload_param) forward.copies.push_back(copy(u, true, "parameter shard"));
    }
  if (o.offload_param)
    forward.what += " Offload: each shard goes up from the host one unit ahead of its gather (it rides the prefetch).";
  plan.step.push_back(forward);

  StepPhase backward{"backward", "Layers run backward last first: each wrapped unit is all-gathered again (" +
                                     std::string(backward_prefetch_name(o.backward_prefetch)) +
                                     " prefetch), and as soon as all of a unit's gradients are there they are "
                                     "reduce-scattered within " + group + " into each rank's 1/" + s +
                                     " gradient shard and the gathered copy is freed.",
                     {}, working};
  const auto reduce_unit = [&](int u) {
    backward.collectives.push_back(planned_collective(CollectiveKind::reduce_scatter, S, plan.units[u].layout.padded_numel * rbytes,
                                                      unit_words(u, "gradients"), u, u + 1));
  };
  int last_hook = 0;
  for (const PlannedUnit& u : plan.units) last_hook = std::max(last_hook, u.hook);
  for (int h = last_hook; h >= 1; --h)
    for (int u = 0; u < static_cast<int>(plan.units.size()); ++u)
      if (plan.units[u].hook == h) {
        backward.collectives.push_back(planned_collective(CollectiveKind::all_gather, S,
                                                          plan.units[u].layout.padded_numel * pbytes,
                                                          unit_words(u, "parameters"), u, u + 1));
        if (o.offload_param) backward.copies.push_back(copy(u, true, "parameter shard"));
      }
  for (int h = last_hook; h >= -1; --h)  // listed by unit; each is issued when its last gradient arrives
    for (int u = 0; u < static_cast<int>(plan.units.size()); ++u)
      if (plan.units[u].hook == h) {
        reduce_unit(u);
        if (o.offload_param || (offload_optimizer && R == 1))
          backward.copies.push_back(copy(u, false, "reduced gradient shard"));
      }
  if (offload_optimizer)
    backward.what += R == 1 || o.offload_param ? " Offload: each reduced gradient shard starts down to the host as soon as its "
                              "reduce-scatter is done, while backward goes on."
                            : " Offload: the gradient shards go down after the replicas' all-reduce.";
  plan.step.push_back(backward);

  StepPhase loss{"sum the loss", "The step's loss for logging: every rank's token-loss sum, added.", {}, working};
  add_scalar(loss.collectives, world, 1, "loss sum (f64)");
  plan.step.push_back(loss);
  if (R > 1) {
    StepPhase replicas{"all-reduce across replicas", "Hybrid: rank r of every shard group holds the same shard; its "
                                                     "gradients are summed over the " + std::to_string(R) + " replicas.",
                       {}, working};
    for (int u = 0; u < static_cast<int>(plan.units.size()); ++u) {
      replicas.collectives.push_back(planned_collective(CollectiveKind::all_reduce, R, plan.units[u].layout.shard_numel * rbytes,
                                                        unit_words(u, "gradient shard"), u, u + 1));
      if (o.offload_param) replicas.copies.push_back(copy(u, true, "gradient shard (for the all-reduce)"));
      if (offload_optimizer) replicas.copies.push_back(copy(u, false, "reduced gradient shard"));
    }
    plan.step.push_back(replicas);
  }
  StepPhase unscale{"unscale + overflow", "One summed inf/NaN flag makes every rank skip an overflowing fp16 step together.",
                    {}, working};
  add_scalar(unscale.collectives, world, 1, "overflow flag (f64)");
  plan.step.push_back(unscale);
  StepPhase norm{"gradient norm", "The squares of each rank's gradient shards, summed within " + group + ".", {}, working};
  add_scalar(norm.collectives, S, 1, "sum of squared gradients (f64)");
  plan.step.push_back(norm);
  StepPhase opt{"optimizer step", "Each rank steps its shard of every unit and writes it into its parameter "
                                   "shard; sharded parameters stay sharded until their next forward.", {}, working};
  if (offload_optimizer) opt.what += " The step runs on the host (multithreaded AdamW).";
  if (o.offload_optimizer && !o.offload_param) {
    opt.what += " Each updated shard goes up while the next is rounded; a unit's next gather waits only for its own.";
    for (int u = 0; u < static_cast<int>(plan.units.size()); ++u) opt.copies.push_back(copy(u, true, "updated parameter shard"));
  }
  plan.step.push_back(opt);
  if (persistent_full > 0) {
    StepPhase gather{"re-gather persistent unit", "The persistent small parameters stay whole: their updated shards are all-gathered.",
                     {}, working};
    for (int u = 0; u < static_cast<int>(plan.units.size()); ++u)
      if (plan.units[u].hook < 0) {
        gather.collectives.push_back(planned_collective(CollectiveKind::all_gather, S, plan.units[u].layout.padded_numel * pbytes,
                                                        unit_words(u, "parameters"), u, u + 1));
        if (o.offload_param) gather.copies.push_back(copy(u, true, "parameter shard"));
      }
    plan.step.push_back(gather);
  }
}

}  // namespace shardlab::dist
