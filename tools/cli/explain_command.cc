// shardlab explain PRESET --world-size N [--hybrid-group-size G] [CONFIG]: for learning, what one training step does under a
// sharding preset, step by step: each collective in order, over which ranks, on which bucket and
// parameters, how many bytes, and what every rank holds after each phase. Printed from
// dist::plan_step (distributed/step_plan.h), which builds the engine's own bucket layout for the
// config's model without training it; tests hold that plan equal to a real step's comm ledger.
#include <cstdio>
#include <filesystem>

#include "distributed/step_plan.h"
#include "models/llama.h"
#include "models/llama_io.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"
#include "tools/cli/data_parallel_options.h"
#include "tools/cli/llama_from_config.h"
#include "tools/cli/run_setup.h"
#include "tools/cli/train_adapter.h"
#include "tools/config/deepspeed_config.h"
#include "tools/config/train_config.h"

namespace shardlab::cli {

namespace {

std::string bytes(int64_t b) {
  char out[48];
  if (b < 1024) std::snprintf(out, sizeof out, "%lld B", static_cast<long long>(b));
  else if (b < 1024 * 1024) std::snprintf(out, sizeof out, "%.2f KiB", static_cast<double>(b) / 1024.0);
  else std::snprintf(out, sizeof out, "%.2f MiB", static_cast<double>(b) / (1024.0 * 1024.0));
  return out;
}

dist::OptimizerStateKind optimizer_kind(config::OptimizerKind k) {
  switch (k) {
    case config::OptimizerKind::adamw: return dist::OptimizerStateKind::adamw;
    case config::OptimizerKind::adamw_8bit: return dist::OptimizerStateKind::adamw_8bit;
    case config::OptimizerKind::sgd: return dist::OptimizerStateKind::sgd;  // train's SGD has no momentum
  }
  return dist::OptimizerStateKind::adamw;
}

void print_phases(const std::vector<dist::StepPhase>& phases, int world) {
  int number = 0;
  for (const dist::StepPhase& p : phases) {
    std::printf("\n%d. %s\n   %s\n", ++number, p.name.c_str(), p.what.c_str());
    for (const dist::PlannedCollective& c : p.collectives)
      std::printf("   -> %-14s %-16s %-70s payload %s, each rank sends %s\n", dist::collective_name(c.kind),
                  (c.group_size == world ? "over all ranks" : "in groups of " + std::to_string(c.group_size)).c_str(),
                  c.tensor.c_str(), bytes(c.payload_bytes).c_str(), bytes(c.wire_bytes).c_str());
    if (p.collectives.empty()) std::printf("   (no communication)\n");
    for (const dist::PlannedCopy& c : p.copies)
      std::printf("   <> %-30s %-70s %s\n", c.to_device ? "copy up to the device" : "copy down to the host",
                  c.tensor.c_str(), bytes(c.bytes).c_str());
    const dist::RankHoldings& h = p.after;
    std::printf("   each rank now holds: parameters %s %s | gradients %s %s | optimizer %s %s", h.parameters.c_str(),
                bytes(h.parameter_bytes).c_str(), h.gradients.c_str(), bytes(h.gradient_bytes).c_str(),
                h.optimizer.c_str(), bytes(h.optimizer_bytes).c_str());
    std::printf(" | total %s", bytes(h.parameter_bytes + h.gradient_bytes + h.optimizer_bytes).c_str());
    if (h.host_bytes > 0) std::printf(" (%s of it on the host)", bytes(h.host_bytes).c_str());
    std::printf("\n");
  }
}

void print_totals(const std::vector<dist::StepPhase>& phases, const char* title) {
  std::printf("\n%s\n  collective        calls   payload bytes   wire bytes per rank\n", title);
  int64_t wire[5] = {};
  for (const dist::StepPhase& p : phases)
    for (const dist::PlannedCollective& c : p.collectives) wire[static_cast<int>(c.kind)] += c.wire_bytes;
  const auto totals = dist::collective_totals(phases);
  for (int k = 0; k < 5; ++k)
    if (totals[k].calls > 0)
      std::printf("  %-15s %7lld %15lld %20lld\n", dist::collective_name(static_cast<dist::CollectiveKind>(k)),
                  static_cast<long long>(totals[k].calls), static_cast<long long>(totals[k].payload_bytes),
                  static_cast<long long>(wire[k]));
}

}  // namespace

int run_explain(const std::vector<std::string>& argv) {
  Args args("explain", {{"world-size", true}, {"hybrid-group-size", true}}, argv);
  SL_CHECK(!args.positional().empty() && args.positional().size() <= 2,
           "shardlab explain: expected PRESET [CONFIG.yaml], e.g. `shardlab explain zero2 --world-size 4 configs/tiny.yaml`");
  const dist::Preset preset = dist::parse_preset(args.positional()[0]);
  const int64_t world = args.get_int("world-size", 0);
  SL_CHECK(world >= 1, "shardlab explain: --world-size N (N >= 1) is required");
  const std::string config_path = args.positional().size() == 2 ? args.positional()[1] : "configs/tiny.yaml";
  // A plan, not a run: a config that says device cuda is planned for the GPU it names (an H100-class
  // one: bf16 and TF32), whether or not this machine has one; `auto` plans for the CPU.
  const config::TrainConfig loaded = config::load_train_config(config_path);
  const bool planned_gpu = loaded.device == config::DeviceKind::cuda;
  const config::TrainConfig cfg = config::resolve_auto(loaded, config::RuntimeCaps{planned_gpu, planned_gpu, planned_gpu});

  // The config's model, built (not loaded: base_model's config.json only) and never run.
  const nn::PrecisionPolicy precision = precision_from(cfg);
  SL_CHECK(cfg.adapter.kind != config::AdapterKind::qlora, config_path, ": explain does not plan QLoRA (its 4-bit base is "
           "built while loading); use adapter lora to see the adapters' buckets");
  std::unique_ptr<models::LlamaForCausalLM> model;
  if (!cfg.base_model.empty()) {
    model = std::make_unique<models::LlamaForCausalLM>(models::load_llama_config(cfg.base_model), 0);
  } else {
    SL_CHECK(cfg.model_config.has_value(), config_path, ": needs base_model or model_config");
    const auto tokenizer = make_tokenizer(cfg);
    model = std::make_unique<models::LlamaForCausalLM>(llama_config_from(*cfg.model_config, tokenizer->vocab_size()),
                                                       static_cast<uint64_t>(cfg.seed));
  }
  if (cfg.adapter.kind == config::AdapterKind::lora) apply_adapter(cfg, *model);

  // The engine's options exactly as `shardlab train` would build them, with PRESET in place of the
  // config's preset (the config's bucket sizes and overlap stay).
  const config::DistributedSettings ds =
      config::check_distributed_runtime(cfg, {world, model->config().hidden_size});
  dist::DataParallelOptions options = data_parallel_options(cfg, ds, static_cast<int>(world));
  options.preset = preset;
  if (args.has("hybrid-group-size")) {
    SL_CHECK(preset == dist::Preset::hybrid_shard, "shardlab explain: --hybrid-group-size is for fsdp_hybrid_shard");
    options.hybrid_shard_group_size = static_cast<int>(args.get_int("hybrid-group-size", 0));
    SL_CHECK(options.hybrid_shard_group_size >= 1 && world % options.hybrid_shard_group_size == 0,
             "shardlab explain: --hybrid-group-size ", options.hybrid_shard_group_size, " must divide --world-size ", world);
  }
  options.reduce_dtype = precision.reduce_dtype;
  const std::vector<dist::PlannedParameter> params = dist::planned_parameters(model->named_parameters());
  const dist::StepPlan plan =
      dist::plan_step({params, model.get(), options, static_cast<int>(world), precision.param_dtype, optimizer_kind(cfg.optimizer)});

  std::printf("shardlab explain: one training step of preset %s on %lld ranks (%s)\n", dist::preset_name(preset),
              static_cast<long long>(world), config_path.c_str());
  std::printf("model: %zu trained parameters, psi = %lld elements; parameters %s, gradients reduced in %s; optimizer %s\n",
              params.size(), static_cast<long long>(plan.psi), dtype_name(plan.param_dtype), dtype_name(plan.reduce_dtype),
              std::string(config::to_string(cfg.optimizer)).c_str());
  std::printf("engine: %s\n", describe(options, static_cast<int>(world)).c_str());
  std::printf("\nbuckets (filled in reverse registration order, so the last layers' gradients fill bucket 0 first):\n");
  for (size_t b = 0; b < plan.buckets.size(); ++b) {
    const dist::BucketLayout& L = plan.buckets[b];
    std::printf("  bucket %zu: %lld elements, padded to %lld = %lld ranks x %lld-element shards (rank r owns [r*%lld, (r+1)*%lld))\n",
                b, static_cast<long long>(L.numel), static_cast<long long>(L.padded_numel), static_cast<long long>(world),
                static_cast<long long>(L.shard_numel), static_cast<long long>(L.shard_numel),
                static_cast<long long>(L.shard_numel));
    for (const dist::BucketSlot& s : L.slots)
      std::printf("    [%8lld, %8lld) %s %s\n", static_cast<long long>(s.offset), static_cast<long long>(s.offset + s.numel),
                  params[s.param].name.c_str(), shape_str(params[s.param].shape).c_str());
  }
  std::printf("\nonce, when the engine is built:");
  print_phases(plan.setup, static_cast<int>(world));
  std::printf("\nevery optimizer step (one micro batch per rank; with gradient accumulation %s):",
              dist::shards_parameters(preset) ? "the forward and backward gathers and reduce-scatters repeat for every "
                                                "micro batch"
                                              : "the earlier micro batches only accumulate, without communication");
  print_phases(plan.step, static_cast<int>(world));
  print_totals(plan.setup, "collectives when the engine is built:");
  print_totals(plan.step, "collectives per step (what the communication ledger counts):");
  const std::array<int64_t, 2> copies = dist::copy_totals(plan.step);
  if (copies[0] + copies[1] > 0)
    std::printf("\noffload copies per step (asynchronous, overlapped as described): %s up to the device, %s down to the host\n",
                bytes(copies[0]).c_str(), bytes(copies[1]).c_str());
  return 0;
}

}  // namespace shardlab::cli
