// Training-step throughput of configs/tiny.yaml's Llama on the CPU: forward, loss, backward, AdamW
// step and zero_grad on a fixed random batch, as tokens/s; tools/bench_train_step.py times the same
// step in PyTorch and tools/bench_train_step.sh prints the two side by side.
//
// Environment: SHARDLAB_BENCH_CONFIG (the YAML; default configs/tiny.yaml), SHARDLAB_BENCH_STEPS
// (timed steps, default 10), SHARDLAB_BENCH_WARMUP (untimed steps first, default 3). Threads are
// OpenMP's: OMP_NUM_THREADS, else one per core.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions.h"
#include "models/byte_tokenizer.h"
#include "models/llama.h"
#include "nn/optimizer.h"
#include "tools/cli/llama_from_config.h"
#include "tools/config/train_config.h"

namespace shardlab::bench {
namespace {

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoll(v) : fallback;
}

std::string config_path() {
  const char* v = std::getenv("SHARDLAB_BENCH_CONFIG");
  return v && *v ? v : SHARDLAB_SOURCE_DIR "/configs/tiny.yaml";
}

// The model as `shardlab train` builds it from the YAML's model_config (same defaults; the byte
// tokenizer's 259 ids when vocab_size is not given).
models::LlamaConfig model_config(const config::TrainConfig& cfg) {
  SL_CHECK(cfg.model_config.has_value(), "bench_train_step: ", config_path(), " has no model_config");
  return cli::llama_config_from(*cfg.model_config, models::ByteTokenizer::kVocabSize);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void bm_train_step(benchmark::State& state) {
  const config::TrainConfig cfg = config::load_train_config(config_path());
  const models::LlamaConfig mc = model_config(cfg);
  const int64_t B = cfg.micro_batch_size, T = cfg.sequence_len;
  const int64_t warmup = env_int("SHARDLAB_BENCH_WARMUP", 3);

  models::LlamaForCausalLM model(mc, /*seed=*/42);
  model.train();
  nn::AdamW optimizer(model.trainable_parameters(), cfg.learning_rate, 0.9, 0.999, 1e-8, cfg.weight_decay);

  // A fixed batch of uniformly random ids; labels are the ids (loss_sum shifts them), so every
  // row has T-1 target tokens, as in the PyTorch reference.
  std::mt19937_64 rng(1234);
  std::uniform_int_distribution<int64_t> id(0, mc.vocab_size - 1);
  std::vector<int64_t> ids(static_cast<size_t>(B * T));
  for (int64_t& v : ids) v = id(rng);
  models::LlamaInputs inputs;
  inputs.input_ids = Tensor::from_ints(ids, {B, T});
  const Tensor labels = inputs.input_ids;

  double first_loss = 0.0, last_loss = 0.0;
  auto step = [&] {
    auto [sum, count] = model.loss_sum(inputs, labels);
    const Tensor loss = sum * (1.0 / static_cast<double>(count));  // the mean, as F.cross_entropy
    backward(loss);
    optimizer.step();
    optimizer.zero_grad();
    return loss.item();
  };
  for (int64_t i = 0; i < warmup; ++i) first_loss = step();

  std::vector<double> seconds;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    last_loss = step();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double tokens = static_cast<double>(B * T);
  state.counters["tokens/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = omp_get_max_threads();

  const double med = median(seconds);
  std::string all_ms;
  for (double s : seconds) all_ms += (all_ms.empty() ? "" : ", ") + std::to_string(s * 1e3);
  std::printf(
      "{\"bench\": \"train_step\", \"impl\": \"shardlab\", \"tokens_per_s\": %.1f, \"step_ms_median\": %.2f, "
      "\"step_ms_min\": %.2f, \"steps\": %zu, \"warmup\": %ld, \"threads\": %d, \"batch\": %ld, \"seq\": %ld, "
      "\"vocab\": %ld, \"hidden\": %ld, \"intermediate\": %ld, \"layers\": %ld, \"heads\": %ld, \"kv_heads\": %ld, "
      "\"parameters\": %ld, \"loss_after_warmup\": %.4f, \"loss_last\": %.4f, \"step_ms\": [%s]}\n",
      tokens / med, med * 1e3, *std::min_element(seconds.begin(), seconds.end()) * 1e3, seconds.size(),
      static_cast<long>(warmup), omp_get_max_threads(), static_cast<long>(B), static_cast<long>(T),
      static_cast<long>(mc.vocab_size), static_cast<long>(mc.hidden_size), static_cast<long>(mc.intermediate_size),
      static_cast<long>(mc.num_hidden_layers), static_cast<long>(mc.num_attention_heads),
      static_cast<long>(mc.num_key_value_heads), static_cast<long>(mc.num_parameters()), first_loss, last_loss,
      all_ms.c_str());
  std::fflush(stdout);
}

// A fixed step count (not Google Benchmark's adaptive one) so that both sides time the same
// number of steps and the median is over a known N.
const bool registered = [] {
  benchmark::RegisterBenchmark("train_step/tiny_yaml_f32", bm_train_step)
      ->Iterations(env_int("SHARDLAB_BENCH_STEPS", 10))
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  return true;
}();

}  // namespace
}  // namespace shardlab::bench
