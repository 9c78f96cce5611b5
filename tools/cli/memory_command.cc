// shardlab memory CONFIG.yaml: for the configured model on one device, the memory ledger's bytes
// per tag for one measured training step in each precision/checkpointing/optimizer variant, then
// full fine-tuning vs LoRA vs QLoRA measured the same way, then the estimator's figures for each
// (tools/estimator). The estimate table per preset comes first (alone with --estimate-only or
// --world-size N > 1, so Llama-3-8B/70B shapes can be sized without running them).
#include <algorithm>
#include <cstdio>

#include "tools/cli/args.h"
#include "tools/cli/commands.h"
#include "tools/cli/memory_measure.h"
#include "tools/config/train_config.h"
#include "tools/estimator/from_train_config.h"
#include "tools/estimator/memory_estimate.h"

namespace shardlab::cli {

namespace {

std::vector<dist::Preset> presets_of(const std::string& list) {
  std::vector<dist::Preset> out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    out.push_back(dist::parse_preset(list.substr(start, comma - start)));
    start = comma + 1;
  }
  return out;
}

}  // namespace

int run_memory(const std::vector<std::string>& argv) {
  Args args("memory",
            {{"world-size", true}, {"presets", true}, {"estimate-only", false}, {"verbose", false},
             {"hybrid-group", true}, {"offload-optimizer", false}, {"offload-params", false},
             {"bucket-elements", true}, {"prefetch-depth", true}},
            argv);
  SL_CHECK(args.positional().size() == 1, "shardlab memory: expected one CONFIG.yaml, got ",
           args.positional().size(), " arguments");
  const std::string config_path = args.positional()[0];
  const config::TrainConfig cfg = config::load_train_config(config_path);
  const models::LlamaConfig mc = estimate::model_config_of(cfg, config_path);
  SL_CHECK(cfg.sequence_len <= mc.max_position_embeddings, config_path, ": sequence_len ", cfg.sequence_len,
           " exceeds the model's max_position_embeddings ", mc.max_position_embeddings);
  const int world = static_cast<int>(args.get_int("world-size", 1));
  SL_CHECK(world >= 1, "shardlab memory: --world-size ", world, " must be >= 1");
  std::vector<estimate::MemoryEstimate> estimates;
  for (dist::Preset p : presets_of(args.get("presets", world == 1 ? "ddp" : "ddp,zero1,zero2,zero3,fsdp_hybrid_shard")))
    estimates.push_back(estimate::estimate_memory(estimate::setup_from_config(
        cfg, mc, p, world, static_cast<int>(args.get_int("hybrid-group", 0)), args.has("offload-optimizer"),
        args.has("offload-params"), args.get_int("bucket-elements", 0), static_cast<int>(args.get_int("prefetch-depth", 1)))));
  std::printf("# estimated per-rank peak bytes per tag (computed, not measured; --verbose prints every term):"
              " batch %ld x %ld, %ld parameters\n%s",
              static_cast<long>(cfg.micro_batch_size), static_cast<long>(cfg.sequence_len),
              static_cast<long>(mc.num_parameters()), estimate::estimate_table(estimates, args.has("verbose")).c_str());
  if (world > 1 || args.has("estimate-only")) return 0;
  std::printf("\n");
  MemoryRunOptions opt;
  opt.micro_batch_size = cfg.micro_batch_size;
  opt.sequence_len = cfg.sequence_len;
  opt.seed = static_cast<uint64_t>(cfg.seed);
  std::printf("# memory of one training step (forward, backward, optimizer step) on the CPU, measured by the\n"
              "# memory ledger; batch %ld x %ld random token ids; model: %ld layers, hidden %ld, vocab %ld\n",
              static_cast<long>(opt.micro_batch_size), static_cast<long>(opt.sequence_len),
              static_cast<long>(mc.num_hidden_layers), static_cast<long>(mc.hidden_size),
              static_cast<long>(mc.vocab_size));
  std::fflush(stdout);
  std::vector<MemoryMeasurement> rows;
  for (const MemoryVariant& v : all_memory_variants()) rows.push_back(measure_training_step(mc, v, opt));
  std::printf("# parameters: %ld\n\n%s", static_cast<long>(rows.front().num_parameters), memory_table(rows).c_str());
  std::vector<MemoryMeasurement> adapters;
  for (const MemoryVariant& v : adapter_memory_variants()) adapters.push_back(measure_training_step(mc, v, opt));
  std::printf("\nfull fine-tuning vs LoRA vs QLoRA (r=8, alpha=16, every decoder projection; QLoRA's projections in"
              " NF4), measured the same way\n%s",
              memory_table(adapters).c_str());
  for (const MemoryMeasurement& m : adapters)  // the full fine-tuning ones are rows already
    if (m.variant.trained != TrainedPart::full) rows.push_back(m);
  std::printf("\n%s", estimate_vs_measured_table(mc, rows, opt).c_str());
  return 0;
}

}  // namespace shardlab::cli
