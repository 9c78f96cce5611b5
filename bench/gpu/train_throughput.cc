// Single-GPU training throughput and MFU of Llama shapes through the whole stack (model, autograd,
// fp32 master weights, AdamW): (a) a 1.1B Llama full fine-tune, (b) Llama-3-8B with LoRA, (c) the
// same with QLoRA (NF4 base). tools/gpu_train_bench.sh runs it next to PyTorch (tools/bench_train_gpu.py).
//
// One step = loss_sum + mean, backward, MasterWeights::step (bf16 grads -> fp32 masters, AdamW,
// masters -> bf16), as `shardlab train` does with bf16 and no clipping. Random init from a seed,
// random token ids (labels = ids, shifted inside loss_sum). Each step is timed with
// cudaDeviceSynchronize + steady_clock around it (host overhead included, as in PyTorch eager).
//
// FLOPs per token (multiply-add = 2). N = the GEMM weights a token passes through: every decoder
// projection (q, k, v, o, gate, up, down) plus lm_head; the embedding is a lookup and the norms
// are elementwise, so neither counts (tools/estimator/step_time_model.cc's convention):
//   attention forward   A = 2 T Hq d L            causal, half of 4 T Hq d L (bench/gpu/attention.cc)
//   full fine-tune      6 N + 3 A                 forward 2N, input grads 2N, weight grads 2N
//   LoRA / QLoRA        4 N + 6 N_lora + 3 A      the frozen base has no weight gradient
//   + checkpointing     + 2 N_proj + 2 N_lora + A  recompute: hardware FLOPs (HFU) only, not MFU
// MFU = model FLOPs/token x tokens/s / peak. mfu_palm counts attention as PaLM (Chowdhery et al.
// 2022, app. B): 12 L Hq d T per token, no causal halving. Peak: dense bf16 by device name.
//
// usage: bench_gpu_train_throughput [--cases a,b,c] [--layers N] [--steps N] [--warmup N] [--out PATH] ...
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "core/atomic_file.h"
#include "core/json.h"
#include "cuda/backend.h"
#include "cuda/caching_allocator.h"
#include "cuda/device.h"
#include "models/llama.h"
#include "nn/linear.h"
#include "nn/lora.h"
#include "nn/master_weights.h"
#include "nn/nf4_linear.h"
#include "nn/optimizer.h"
#include "bench/gpu/gpu_bench_util.h"

namespace shardlab::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<std::string> cases{"a", "b", "c"};
  int64_t layers = 0;       // 0: the shape's own depth
  int steps = 6, warmup = 2;
  int64_t seq = 2048;
  int64_t micro_batch = 4;  // case a; b and c run one sequence
  int64_t lora_r = 16;
  double lora_alpha = 32;
  double peak_tflops = 0;   // 0: from kPeaks by device name
  std::string init = "uniform";
  std::string out;
  bool cpu = false;  // --device cpu: a smoke test of the harness itself (tiny --layers/--seq), no MFU
};

enum class Method { full, lora, qlora };
const char* method_name(Method m) { return m == Method::full ? "full" : m == Method::lora ? "lora" : "qlora"; }

struct CaseSpec {
  std::string id;     // "a", "b", "c", optionally "_ckpt"
  Method method = Method::full;
  std::string shape;  // "llama-1.1b" or "llama-3-8b"
  models::LlamaConfig config;
  int64_t batch = 1;
  bool checkpointing = false;
};

// Dense bf16 tensor-core peaks (no sparsity) from NVIDIA's datasheets; first match wins.
struct Peak {
  const char* name_contains;
  double tflops;
};
constexpr Peak kPeaks[] = {{"H100 PCIe", 756}, {"H100 NVL", 835}, {"H200 NVL", 835}, {"GH200", 989},
                           {"H200", 989},      {"H100", 989},     {"H800", 989},     {"A100", 312},
                           {"L40S", 362}};
constexpr const char* kLoraTargets[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
constexpr uint64_t kSeed = 42;

// About 1.1B parameters: TinyLlama's attention (32 query / 8 KV heads of 64) with a 2048 x 8192 MLP.
models::LlamaConfig llama_1b(int64_t seq) {
  models::LlamaConfig c;
  c.vocab_size = 32000;
  c.hidden_size = 2048;
  c.intermediate_size = 8192;
  c.num_hidden_layers = 16;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.max_position_embeddings = std::max<int64_t>(2048, seq);
  c.torch_dtype = DType::bf16;
  return c;
}

// Meta-Llama-3-8B's config.json.
models::LlamaConfig llama3_8b(int64_t seq) {
  models::LlamaConfig c;
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.max_position_embeddings = std::max<int64_t>(8192, seq);
  c.torch_dtype = DType::bf16;
  return c;
}

CaseSpec make_case(const std::string& id, const Options& opt) {
  CaseSpec s;
  s.id = id;
  std::string base = id;
  if (base.size() > 5 && base.compare(base.size() - 5, 5, "_ckpt") == 0) {
    base.resize(base.size() - 5);
    s.checkpointing = true;
  }
  if (base == "a") {
    s.method = Method::full, s.shape = "llama-1.1b", s.config = llama_1b(opt.seq), s.batch = opt.micro_batch;
  } else if (base == "b" || base == "c") {
    s.method = base == "b" ? Method::lora : Method::qlora, s.shape = "llama-3-8b", s.config = llama3_8b(opt.seq);
    s.batch = 1;
  } else {
    SL_FAIL("unknown case '", id, "' (expected a, b, c, optionally with _ckpt)");
  }
  if (opt.layers > 0) s.config.num_hidden_layers = opt.layers;
  s.config.validate();
  return s;
}

// FNV-1a: a stable per-projection seed from its dotted name.
uint64_t name_seed(const std::string& name) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ULL;
  return kSeed ^ h;
}

// The decoder projections: with --init uniform, torch's default U(+-1/sqrt(in)) (a counter hash,
// ~5x cheaper on the host than the model's N(0, 0.02), which matters at 7B); with QLoRA, each is
// quantized to NF4 as it is built (models/llama_quantize's path), so the bf16 model never exists.
models::ProjectionFactory projection_factory(const CaseSpec& s, bool uniform) {
  const double std_dev = uniform ? 0.0 : s.config.initializer_range;
  if (s.method == Method::qlora)
    return [std_dev](const std::string& name, int64_t in, int64_t out) -> std::shared_ptr<nn::UnaryModule> {
      NoGradGuard no_grad;
      auto dense = std::make_shared<nn::Linear>(in, out, false, name_seed(name), DType::bf16, std_dev);
      return nn::Nf4Linear::quantize(dense->named_parameters().front().second, DType::bf16);
    };
  if (!uniform) return {};  // the model's own N(0, initializer_range)
  return [](const std::string& name, int64_t in, int64_t out) -> std::shared_ptr<nn::UnaryModule> {
    return std::make_shared<nn::Linear>(in, out, false, name_seed(name), DType::bf16, 0.0);
  };
}

struct FlopCount {
  int64_t params_total = 0;    // the dense model's parameters (config.num_parameters())
  int64_t params_trained = 0;  // what the optimizer steps
  int64_t projection_params = 0, head_params = 0, gemm_params = 0;
  double attention_fwd = 0, model = 0, hardware = 0, model_palm = 0;  // per token
};

FlopCount count_flops(const CaseSpec& s, int64_t trained, int64_t T) {
  const models::LlamaConfig& c = s.config;
  const int64_t C = c.hidden_size, d = c.resolved_head_dim(), L = c.num_hidden_layers;
  const int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, I = c.intermediate_size;
  FlopCount f;
  f.params_total = c.num_parameters();
  f.params_trained = trained;
  f.projection_params = L * (2 * C * Hq * d + 2 * C * Hkv * d + 3 * C * I);
  f.head_params = c.vocab_size * C;  // tied or not, the head GEMM runs
  f.gemm_params = f.projection_params + f.head_params;
  const double N = double(f.gemm_params), lora = s.method == Method::full ? 0.0 : double(trained);
  f.attention_fwd = 2.0 * double(T) * double(Hq) * double(d) * double(L);
  const double weights = s.method == Method::full ? 6.0 * N : 4.0 * N + 6.0 * lora;
  f.model = weights + 3.0 * f.attention_fwd;
  f.model_palm = weights + 6.0 * f.attention_fwd;  // 12 L Hq d T
  f.hardware = f.model;
  if (s.checkpointing) f.hardware += 2.0 * double(f.projection_params) + 2.0 * lora + f.attention_fwd;
  return f;
}

// Waits for the GPU's queued work (timing and memory figures need it); nothing on the CPU.
void sync(const Options& opt) {
  if (!opt.cpu) SL_CUDA_CHECK(cudaDeviceSynchronize());
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
double gib(int64_t bytes) { return double(bytes) / double(int64_t{1} << 30); }

json::Value config_json(const models::LlamaConfig& c) {
  json::Object o;
  o.set("vocab_size", c.vocab_size);
  o.set("hidden_size", c.hidden_size);
  o.set("intermediate_size", c.intermediate_size);
  o.set("num_hidden_layers", c.num_hidden_layers);
  o.set("num_attention_heads", c.num_attention_heads);
  o.set("num_key_value_heads", c.num_key_value_heads);
  o.set("head_dim", c.resolved_head_dim());
  o.set("rope_theta", c.rope_theta);
  o.set("rms_norm_eps", c.rms_norm_eps);
  o.set("tie_word_embeddings", c.tie_word_embeddings);
  return json::Value(std::move(o));
}

// Builds, moves and trains one case; throws on any error (out of memory included).
json::Object run_case(const CaseSpec& s, const Options& opt, double peak_tflops) {
  const Device gpu = opt.cpu ? Device::cpu() : Device::cuda(0);
  const int64_t B = s.batch, T = opt.seq;
  if (!opt.cpu) cuda::reset_caching_allocator_peaks(0);
  const auto setup_start = Clock::now();
  auto model = std::make_unique<models::LlamaForCausalLM>(s.config, kSeed, projection_factory(s, opt.init == "uniform"));
  model->set_gradient_checkpointing(s.checkpointing);
  std::vector<std::string> wrapped;
  if (s.method != Method::full) {
    nn::LoraSettings lora;
    lora.r = opt.lora_r;
    lora.alpha = opt.lora_alpha;
    lora.dropout = 0.0;
    lora.target_modules.assign(std::begin(kLoraTargets), std::end(kLoraTargets));
    lora.seed = 7;
    wrapped = nn::apply_lora(*model, lora);  // freezes everything else
  }
  if (!opt.cpu) model->to(gpu);  // before the masters and optimizer state, so they are made on the GPU
  model->train();
  nn::MasterWeights masters(model->trainable_parameters());
  nn::AdamW adamw(masters.masters(), 1e-4, 0.9, 0.999, 1e-8, 0.01);
  const int64_t trained = model->num_parameters(/*trainable_only=*/true);

  std::mt19937_64 rng(1234);
  std::uniform_int_distribution<int64_t> id(0, s.config.vocab_size - 1);
  std::vector<int64_t> ids(static_cast<size_t>(B * T));
  for (int64_t& v : ids) v = id(rng);
  models::LlamaInputs inputs;
  inputs.input_ids = Tensor::from_ints(ids, {B, T}).to(gpu);
  const Tensor labels = inputs.input_ids;
  sync(opt);
  const double setup_s = seconds_since(setup_start);

  int64_t skipped = 0;  // steps whose gradients were not finite (MasterWeights skips the update)
  auto step = [&]() -> Tensor {
    auto [sum, count] = model->loss_sum(inputs, labels);
    Tensor loss = sum * (1.0 / static_cast<double>(count));  // the mean, as HF's loss
    backward(loss);
    if (!masters.step(adamw)) ++skipped;  // no loss scaler: bf16
    return loss;
  };
  double first_step_ms = 0, loss_first = 0, loss_last = 0;
  for (int i = 0; i < opt.warmup; ++i) {
    const auto t0 = Clock::now();
    const Tensor loss = step();
    sync(opt);
    if (i == 0) first_step_ms = seconds_since(t0) * 1e3, loss_first = loss.item();
  }
  std::vector<double> ms;
  for (int i = 0; i < opt.steps; ++i) {
    sync(opt);
    const auto t0 = Clock::now();
    const Tensor loss = step();
    sync(opt);
    ms.push_back(seconds_since(t0) * 1e3);
    loss_last = loss.item();  // outside the timed region
    if (i == 0 && opt.warmup == 0) loss_first = loss_last;
  }
  const cuda::BlockCacheStats mem = opt.cpu ? cuda::BlockCacheStats{} : cuda::caching_allocator_stats(0);

  const FlopCount f = count_flops(s, trained, T);
  const double med_s = median(ms) * 1e-3, tokens = double(B * T), tps = tokens / med_s;
  json::Object row;
  row.set("case", s.id);
  row.set("status", "ok");
  row.set("method", method_name(s.method));
  row.set("shape", s.shape);
  row.set("config", config_json(s.config));
  row.set("batch", B);
  row.set("seq", T);
  row.set("tokens_per_step", B * T);
  row.set("gradient_checkpointing", s.checkpointing);
  row.set("precision", s.method == Method::qlora
                           ? "NF4 frozen base (bnb layout, blocksize 64, double quant), bf16 compute, bf16 LoRA + fp32 masters"
                       : s.method == Method::lora ? "bf16 frozen base, bf16 LoRA + fp32 masters (nn::MasterWeights)"
                                                  : "bf16 params + fp32 masters (nn::MasterWeights)");
  row.set("optimizer", "AdamW lr 1e-4 betas (0.9, 0.999) eps 1e-8 weight_decay 0.01 on the fp32 masters");
  if (!wrapped.empty()) {
    row.set("lora_r", opt.lora_r);
    row.set("lora_alpha", opt.lora_alpha);
    row.set("lora_modules", static_cast<int64_t>(wrapped.size()));
  }
  row.set("init", opt.init == "uniform" ? "projections U(+-1/sqrt(in)), embeddings and lm_head N(0, 0.02)"
                                        : "N(0, 0.02) everywhere, norms ones (HF)");
  row.set("params_total", f.params_total);
  row.set("params_trained", f.params_trained);
  row.set("gemm_params_N", f.gemm_params);
  row.set("projection_params", f.projection_params);
  row.set("lm_head_params", f.head_params);
  row.set("attention_fwd_flops_per_token", f.attention_fwd);
  row.set("model_flops_per_token", f.model);
  row.set("hardware_flops_per_token", f.hardware);
  row.set("model_flops_per_token_palm", f.model_palm);
  row.set("setup_s", setup_s);
  row.set("first_step_ms", first_step_ms);
  row.set("step_ms_median", median(ms));
  row.set("step_ms_min", *std::min_element(ms.begin(), ms.end()));
  json::Array all;
  for (double v : ms) all.push_back(json::Value(v));
  row.set("step_ms", json::Value(std::move(all)));
  row.set("tokens_per_s", tps);
  row.set("model_tflops", f.model * tps * 1e-12);
  if (peak_tflops > 0) {
    row.set("mfu", f.model * tps / (peak_tflops * 1e12));
    row.set("hfu", f.hardware * tps / (peak_tflops * 1e12));
    row.set("mfu_palm", f.model_palm * tps / (peak_tflops * 1e12));
  }
  row.set("skipped_steps_nonfinite", skipped);
  row.set("loss_first", loss_first);
  row.set("loss_last", loss_last);
  row.set("peak_allocated_gib", gib(mem.peak_allocated_bytes));
  row.set("peak_reserved_gib", gib(mem.peak_reserved_bytes));
  return row;
}

bool is_oom(const std::string& what) { return what.find("out of memory") != std::string::npos; }

// run_case, retried after out of memory with half the batch, then (at batch 1) with gradient
// checkpointing; other errors are recorded in the row.
json::Object run_with_retries(CaseSpec s, const Options& opt, double peak_tflops) {
  json::Array retries;
  for (;;) {
    std::string error;
    try {
      json::Object row = run_case(s, opt, peak_tflops);
      if (!retries.empty()) row.set("oom_retries", json::Value(std::move(retries)));
      return row;
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (!opt.cpu) cuda::empty_cache();  // the failed case's tensors are gone: give the next try a clean device
    json::Object r;
    r.set("batch", s.batch);
    r.set("gradient_checkpointing", s.checkpointing);
    r.set("error", error);
    retries.push_back(json::Value(std::move(r)));
    if (is_oom(error) && s.batch > 1) {
      s.batch /= 2;
      std::printf("# case %s: out of memory, retrying with batch %lld\n", s.id.c_str(), (long long)s.batch);
    } else if (is_oom(error) && !s.checkpointing) {
      s.checkpointing = true;
      std::printf("# case %s: out of memory, retrying with gradient checkpointing\n", s.id.c_str());
    } else {
      json::Object row;
      row.set("case", s.id);
      row.set("status", "error");
      row.set("method", method_name(s.method));
      row.set("shape", s.shape);
      row.set("batch", s.batch);
      row.set("gradient_checkpointing", s.checkpointing);
      row.set("error", error);
      row.set("attempts", json::Value(std::move(retries)));
      std::fprintf(stderr, "# case %s failed: %s\n", s.id.c_str(), error.c_str());
      return row;
    }
  }
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

int usage(const char* prog, const char* error) {
  if (error) std::fprintf(stderr, "%s: %s\n", prog, error);
  std::fprintf(stderr,
               "usage: %s [options]\n"
               "  --cases LIST        a (1.1B full), b (8B LoRA), c (8B QLoRA); _ckpt suffix: gradient\n"
               "                      checkpointing (a_ckpt); default a,b,c\n"
               "  --layers N          decoder layers of every shape (default: its own, 16 / 32)\n"
               "  --steps N           timed steps, median reported (default 6)\n"
               "  --warmup N          untimed steps first (default 2)\n"
               "  --seq N             sequence length (default 2048)\n"
               "  --micro-batch N     case a's sequences per step (default 4; b and c run 1)\n"
               "  --lora-r N / --lora-alpha X   (default 16 / 32)\n"
               "  --peak-tflops X     dense bf16 peak for MFU (default: by device name)\n"
               "  --init uniform|hf   projection init (default uniform: fast on the host)\n"
               "  --out PATH          JSON (default bench/results/train_throughput_shardlab_<device>.json)\n"
               "  --device cpu        smoke-test the harness on the CPU (tiny --layers/--seq; no MFU)\n",
               prog);
  return error ? 2 : 0;
}

int run(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") return usage(argv[0], nullptr);
    if (i + 1 >= argc) return usage(argv[0], ("missing value after " + arg).c_str());
    const std::string v = argv[++i];
    if (arg == "--cases") opt.cases = split_list(v);
    else if (arg == "--layers") opt.layers = std::atoll(v.c_str());
    else if (arg == "--steps") opt.steps = std::atoi(v.c_str());
    else if (arg == "--warmup") opt.warmup = std::atoi(v.c_str());
    else if (arg == "--seq") opt.seq = std::atoll(v.c_str());
    else if (arg == "--micro-batch") opt.micro_batch = std::atoll(v.c_str());
    else if (arg == "--lora-r") opt.lora_r = std::atoll(v.c_str());
    else if (arg == "--lora-alpha") opt.lora_alpha = std::atof(v.c_str());
    else if (arg == "--peak-tflops") opt.peak_tflops = std::atof(v.c_str());
    else if (arg == "--init") opt.init = v;
    else if (arg == "--out") opt.out = v;
    else if (arg == "--device" && (v == "cpu" || v == "cuda")) opt.cpu = v == "cpu";
    else return usage(argv[0], ("unknown option " + arg).c_str());
  }
  if (opt.steps < 1 || opt.warmup < 0) return usage(argv[0], "--steps must be >= 1 and --warmup >= 0");
  if (opt.seq < 2 || opt.micro_batch < 1 || opt.lora_r < 1 || opt.layers < 0) return usage(argv[0], "bad size");
  if (opt.init != "uniform" && opt.init != "hf") return usage(argv[0], "--init must be uniform or hf");
  if (opt.cases.empty()) return usage(argv[0], "--cases is empty");
  std::vector<CaseSpec> specs;
  for (const std::string& id : opt.cases) specs.push_back(make_case(id, opt));  // bad ids fail before the GPU

  if (!opt.cpu && !cuda::initialize()) {
    std::fprintf(stderr, "%s: no CUDA device visible (no GPU or no driver): nothing to measure\n", argv[0]);
    return 1;
  }
  if (!opt.cpu) SL_CUDA_CHECK(cudaSetDevice(0));
  const std::string device = opt.cpu ? "cpu" : cuda::device_name(0);
  if (opt.out.empty()) opt.out = "bench/results/train_throughput_shardlab_" + sanitized(device) + ".json";
  double peak = opt.cpu ? 0.0 : opt.peak_tflops;
  std::string peak_source = "--peak-tflops";
  if (opt.cpu) {
    peak_source = "cpu smoke test: no MFU";
  } else if (peak <= 0) {
    peak_source = "unknown device: pass --peak-tflops for MFU";
    for (const Peak& p : kPeaks)
      if (device.find(p.name_contains) != std::string::npos) {
        peak = p.tflops, peak_source = std::string("table: '") + p.name_contains + "' dense bf16";
        break;
      }
  }
  std::printf("# shardlab training throughput on %s; peak %.0f TFLOP/s (%s)\n", device.c_str(), peak,
              peak_source.c_str());
  std::printf("# %d warm-up + %d timed steps per case, seq %lld; MFU = (6N or 4N + 6N_lora) + 6 L Hq d T "
              "(causal attention) per token\n",
              opt.warmup, opt.steps, (long long)opt.seq);
  std::printf("%-7s %-6s %-11s %3s %5s %9s %11s %9s %7s %7s %9s\n", "case", "method", "shape", "B", "ckpt",
              "step ms", "tokens/s", "TFLOP/s", "MFU", "HFU", "peak GiB");

  json::Object doc;
  doc.set("bench", "train_throughput_gpu");
  doc.set("impl", "shardlab");
  doc.set("date", utc_now());
  doc.set("device", device);
  doc.set("peak_tflops", peak);
  doc.set("peak_source", peak_source);
  doc.set("steps", opt.steps);
  doc.set("warmup", opt.warmup);
  doc.set("seq", opt.seq);
  doc.set("timing", "cudaDeviceSynchronize + steady_clock around each step (forward, loss, backward, "
                    "grads to fp32 masters, AdamW, masters to bf16, zero_grad); median of the timed steps");
  doc.set("flops", "N = decoder projections + lm_head (embedding lookup and norms not counted); "
                   "A = 2 T Hq d L (causal attention forward per token); full: 6N + 3A; LoRA/QLoRA: 4N + 6 N_lora + 3A; "
                   "hardware (HFU) adds 2 N_proj + 2 N_lora + A with checkpointing; mfu_palm uses 12 L Hq d T "
                   "for attention (PaLM, no causal halving)");
  if (!opt.cpu) {  // an op without a CUDA kernel fails its case with an error naming it; list them up front
    json::Array missing;
    for (const std::string& op : cuda::ops_without_cuda_kernel()) missing.push_back(json::Value(op));
    if (!missing.empty()) std::printf("# %zu ops have no CUDA kernel (see ops_without_cuda_kernel)\n", missing.size());
    doc.set("ops_without_cuda_kernel", json::Value(std::move(missing)));
  }
  json::Array rows;
  for (const CaseSpec& s : specs) {
    json::Object row = run_with_retries(s, opt, peak);
    if (!opt.cpu) cuda::empty_cache();
    const json::Value* status = row.find("status");
    if (status && status->as_string() == "ok") {
      auto num = [&](const char* k) { return row.find(k)->as_double(); };
      const json::Value* mfu = row.find("mfu");
      const json::Value* hfu = row.find("hfu");
      std::printf("%-7s %-6s %-11s %3lld %5s %9.1f %11.0f %9.1f %6.1f%% %6.1f%% %9.1f\n", s.id.c_str(),
                  method_name(s.method), s.shape.c_str(), (long long)row.find("batch")->as_int(),
                  row.find("gradient_checkpointing")->as_bool() ? "on" : "off", num("step_ms_median"),
                  num("tokens_per_s"), num("model_tflops"), mfu ? 100 * mfu->as_double() : 0.0,
                  hfu ? 100 * hfu->as_double() : 0.0, num("peak_allocated_gib"));
    } else {
      std::printf("%-7s %-6s %-11s FAILED (see JSON)\n", s.id.c_str(), method_name(s.method), s.shape.c_str());
    }
    std::fflush(stdout);
    rows.push_back(json::Value(std::move(row)));
    // Rewritten after every case, so a run cut short still leaves the finished cases.
    json::Object partial = doc;
    partial.set("cases", json::Value(rows));
    if (const auto dir = std::filesystem::path(opt.out).parent_path(); !dir.empty())
      std::filesystem::create_directories(dir);
    write_file_atomic(opt.out, json::dump_pretty(json::Value(std::move(partial))) + "\n");
  }
  std::printf("wrote %s\n", opt.out.c_str());
  return 0;
}

}  // namespace
}  // namespace shardlab::bench

int main(int argc, char** argv) {
  try {
    return shardlab::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }
}
