// shardlab memory CONFIG.yaml: for the configured model on one device, the memory ledger's bytes
// per tag for one measured training step in each precision/checkpointing/optimizer variant, then
// full fine-tuning vs LoRA vs QLoRA measured the same way, then a projection of the three for
// Llama-3-8B's shapes (computed, not measured; see llama3_8b_projection).
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

double gib(double bytes) { return bytes / (1024.0 * 1024.0 * 1024.0); }

// Llama-3-8B (hidden 4096, intermediate 14336, 32 layers, 32 heads, 8 KV heads of 128, vocab
// 128256, untied head) at micro batch 1 x 2048 tokens, bf16 compute. Every formula is printed.
std::string llama3_8b_projection() {
  const double H = 4096, I = 14336, L = 32, heads = 32, kv = 8 * 128, V = 128256, r = 8, T = 2048, B = 1;
  // Projections per layer: q, o (H x H), k, v (H x kv), gate, up (H x I), down (I x H).
  const double proj = 2 * H * H + 2 * H * kv + 3 * H * I;
  const double other = 2 * V * H + L * 2 * H + H;  // embed + lm_head + 2 norms per layer + final norm
  const double P = L * proj + other;
  // LoRA on every projection: A (r x in) + B (out x r) = r * (in + out) each.
  const double lora = L * r * (2 * (H + H) + 2 * (H + kv) + 2 * (H + I) + (I + H));
  // Activations kept for backward per layer, bf16 (2 B/element): the two norm inputs and outputs
  // 4BTH, q/k/v BT(H + 2kv), attention output BTH, gate/up outputs and their product 3BTI, and
  // the softmax probabilities B*heads*T^2 (no fused attention); plus f32 logits 4BTV for the loss.
  // With checkpointing: each layer's input 2BTH, plus one layer's full set while it is recomputed.
  const double per_layer = 2 * (B * T * (5 * H + 2 * kv + 3 * I) + B * heads * T * T);
  const double logits = 4 * B * T * V;
  const double act = L * per_layer + logits, act_ckpt = L * 2 * B * T * H + per_layer + logits;
  // Parameter and state bytes. Mixed precision as `train` runs it: bf16 parameter 2 B, fp32 master
  // 4 B, its fp32 gradient 4 B (the bf16 gradient is dropped once copied), Adam m and v 8 B: 18 B
  // per trained parameter. A frozen bf16 parameter costs 2 B. NF4: 4 bits (0.5 B) per weight plus
  // double-quantized absmax, one 8-bit code per block of 64 (1/64 B) and one fp32 per 256 blocks
  // (4/16384 B): 0.5 + 1/64 + 1/4096 = 0.5159 B per projection weight; the rest stays bf16.
  const double nf4 = 0.5 + 1.0 / 64 + 4.0 / (64 * 256);
  struct Row {
    const char* name;
    double weights, trained_state;
  } rows[] = {
      {"full fine-tuning", 2 * P, 16 * P},
      {"LoRA (bf16 base)", 2 * P, 18 * lora},
      {"QLoRA (NF4 base)", nf4 * L * proj + 2 * other, 18 * lora},
  };
  std::string out;
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "\nprojected for Llama-3-8B shapes (computed from the formulas, not measured):\n"
                "# P = L*(2H^2 + 2H*kv + 3H*I) + 2VH + (2L+1)H = %.3fB parameters;"
                " LoRA r=%.0f on every projection: L*r*sum(in+out) = %.1fM trainable\n",
                P / 1e9, r, lora / 1e6);
  out += buf;
  out += "# weights: full and LoRA 2P (bf16); QLoRA 0.5159 B per projection weight (NF4 + double-quantized\n"
         "#   absmax: 0.5 + 1/64 + 1/4096) + 2 B for embeddings, lm_head and norms\n"
         "# trained state: full 16P (fp32 master 4 + fp32 grad 4 + Adam m, v 8; the bf16 weight is in weights);\n"
         "#   LoRA/QLoRA 18 B per adapter parameter (bf16 2 + master 4 + grad 4 + m, v 8)\n"
         "# activations at B=1, T=2048, bf16: per layer 2*(BT(5H + 2kv + 3I) + B*heads*T^2), plus f32 logits 4BTV;\n"
         "#   with checkpointing L*2BTH + one layer's set + logits (the same for all three: every projection input is kept)\n";
  std::snprintf(buf, sizeof buf, "%-20s %12s %14s %14s %14s %14s\n", "GiB", "weights", "trained state",
                "activations", "total", "total ckpt");
  out += buf;
  for (const Row& row : rows) {
    std::snprintf(buf, sizeof buf, "%-20s %12.2f %14.2f %14.2f %14.2f %14.2f\n", row.name, gib(row.weights),
                  gib(row.trained_state), gib(act), gib(row.weights + row.trained_state + act),
                  gib(row.weights + row.trained_state + act_ckpt));
    out += buf;
  }
  return out;
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
  std::vector<MemoryMeasurement> adapters;
  for (const MemoryVariant& v : adapter_memory_variants()) adapters.push_back(measure_training_step(mc, v, opt));
  std::printf("\nfull fine-tuning vs LoRA vs QLoRA (r=8, alpha=16, every decoder projection; QLoRA's projections in"
              " NF4), measured the same way\n%s",
              memory_table(adapters).c_str());
  std::printf("%s", llama3_8b_projection().c_str());
  return 0;
}

}  // namespace shardlab::cli
