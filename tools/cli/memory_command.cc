// shardlab memory CONFIG.yaml: for the configured model on one device, the memory ledger's bytes
// per tag for one measured training step in each precision/checkpointing/optimizer variant, then
// full fine-tuning vs LoRA vs QLoRA measured the same way, then the estimator's figures for each
// (tools/estimator). The estimate table per preset comes first (alone with --estimate-only or
// --world-size N > 1, so Llama-3-8B/70B shapes can be sized without running them).
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "models/byte_tokenizer.h"
#include "models/llama_io.h"
#include "models/tokenizer.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"
#include "tools/cli/llama_from_config.h"
#include "tools/cli/memory_measure.h"
#include "tools/config/train_config.h"
#include "tools/estimator/memory_estimate.h"

namespace shardlab::cli {

namespace fs = std::filesystem;

namespace {

// The vocabulary size a model_config without vocab_size gets: the tokenizer's, as in `train`.
int64_t tokenizer_vocab(const config::TrainConfig& cfg) {
  if (cfg.tokenizer == "byte") return models::ByteTokenizer().vocab_size();
  fs::path path = fs::path(cfg.tokenizer);
  if (path.filename() == "tokenizer.json") path = path.parent_path();
  return models::load_tokenizer(path.string())->vocab_size();
}

// The model the config trains: only config.json of base_model is read (weights do not change bytes).
models::LlamaConfig model_config(const config::TrainConfig& cfg, const std::string& path) {
  if (!cfg.base_model.empty()) return models::load_llama_config(cfg.base_model);
  SL_CHECK(cfg.model_config.has_value(), path, ": needs base_model or model_config");
  const int64_t vocab = cfg.model_config->vocab_size.has_value() ? *cfg.model_config->vocab_size : tokenizer_vocab(cfg);
  return llama_config_from(*cfg.model_config, vocab);
}

// The per-rank estimate setup the train config describes, for `preset` over `world` ranks.
estimate::EstimateSetup setup_from_config(const config::TrainConfig& cfg, const models::LlamaConfig& mc,
                                          const Args& args, dist::Preset preset, int world) {
  estimate::EstimateSetup s;
  s.model = mc;
  s.precision = cfg.bf16 == config::Toggle::on   ? estimate::Precision::bf16_masters
                : cfg.fp16 == config::Toggle::on ? estimate::Precision::fp16_masters
                                                 : estimate::Precision::f32;
  s.optimizer = cfg.optimizer == config::OptimizerKind::adamw_8bit ? estimate::OptimizerKind::adamw_8bit
                : cfg.optimizer == config::OptimizerKind::sgd      ? estimate::OptimizerKind::sgd
                                                                   : estimate::OptimizerKind::adamw;
  s.adapter = cfg.adapter.kind == config::AdapterKind::lora    ? estimate::AdapterKind::lora
              : cfg.adapter.kind == config::AdapterKind::qlora ? estimate::AdapterKind::qlora
                                                          : estimate::AdapterKind::none;
  s.lora_r = cfg.adapter.lora_r;
  if (!cfg.adapter.lora_target_linear) s.lora_targets = cfg.adapter.lora_target_modules;
  s.gradient_checkpointing = cfg.gradient_checkpointing;
  s.micro_batch_size = cfg.micro_batch_size;
  s.sequence_len = cfg.sequence_len;
  s.preset = preset;
  s.world_size = world;
  s.hybrid_group_size = static_cast<int>(args.get_int("hybrid-group", 0));
  s.offload_optimizer = args.has("offload-optimizer");
  s.offload_params = args.has("offload-params");
  s.bucket_elements = args.get_int("bucket-elements", 0);
  s.prefetch_depth = static_cast<int>(args.get_int("prefetch-depth", 1));
  return s;
}

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
  const models::LlamaConfig mc = model_config(cfg, config_path);
  SL_CHECK(cfg.sequence_len <= mc.max_position_embeddings, config_path, ": sequence_len ", cfg.sequence_len,
           " exceeds the model's max_position_embeddings ", mc.max_position_embeddings);
  const int world = static_cast<int>(args.get_int("world-size", 1));
  SL_CHECK(world >= 1, "shardlab memory: --world-size ", world, " must be >= 1");
  std::vector<estimate::MemoryEstimate> estimates;
  for (dist::Preset p : presets_of(args.get("presets", world == 1 ? "ddp" : "ddp,zero1,zero2,zero3,fsdp_hybrid_shard")))
    estimates.push_back(estimate::estimate_memory(setup_from_config(cfg, mc, args, p, world)));
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
  rows.insert(rows.end(), adapters.begin() + 1, adapters.end());
  std::printf("\n%s", estimate_vs_measured_table(mc, rows, opt).c_str());
  return 0;
}

}  // namespace shardlab::cli
