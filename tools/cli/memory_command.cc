// shardlab memory CONFIG.yaml: for the configured model on one device, the memory ledger's bytes
// per tag for one measured training step in each precision/checkpointing/optimizer variant.
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

}  // namespace

int run_memory(const std::vector<std::string>& argv) {
  Args args("memory", {}, argv);
  SL_CHECK(args.positional().size() == 1, "shardlab memory: expected one CONFIG.yaml, got ",
           args.positional().size(), " arguments");
  const std::string config_path = args.positional()[0];
  const config::TrainConfig cfg = config::load_train_config(config_path);
  const models::LlamaConfig mc = model_config(cfg, config_path);
  SL_CHECK(cfg.sequence_len <= mc.max_position_embeddings, config_path, ": sequence_len ", cfg.sequence_len,
           " exceeds the model's max_position_embeddings ", mc.max_position_embeddings);
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
  return 0;
}

}  // namespace shardlab::cli
