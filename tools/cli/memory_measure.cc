// Measures one training step per variant through the real Trainer (its MemTagScope tags the
// forward/backward as activation), reading the process-wide memory ledger before and after.
#include "tools/cli/memory_measure.h"

#include <cstdio>
#include <memory>
#include <random>

#include "models/llama.h"
#include "models/llama_quantize.h"
#include "nn/lora.h"
#include "nn/master_weights.h"
#include "nn/optimizer.h"
#include "nn/optimizer_8bit.h"
#include "tools/trainer/trainer.h"

namespace shardlab::cli {

namespace {

// The same batch of random token ids every time (labels = inputs; the model shifts them).
class RandomTokens final : public train::BatchStream {
 public:
  RandomTokens(int64_t vocab, int64_t batch, int64_t seq, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
    ids_.resize(static_cast<size_t>(batch * seq));
    for (int64_t& id : ids_) id = pick(rng);
    batch_ = batch;
    seq_ = seq;
  }
  train::MicroBatch next() override {
    Tensor ids = Tensor::from_ints(ids_, {batch_, seq_});
    return {{ids, Tensor(), Tensor()}, ids, batch_ * (seq_ - 1)};
  }
  json::Value state() const override { return json::Value(); }
  void restore(const json::Value&) override {}

 private:
  std::vector<int64_t> ids_;
  int64_t batch_ = 0, seq_ = 0;
};

// The tags the report shows (communication is always 0 on one device).
constexpr MemTag kShown[] = {MemTag::parameter,  MemTag::gradient,  MemTag::optimizer_state,
                             MemTag::activation, MemTag::workspace, MemTag::other};

double mib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace

std::string MemoryVariant::name() const {
  std::string n = bf16 ? "bf16+masters" : "f32";
  n += gradient_checkpointing ? " ckpt" : "";
  n += adamw_8bit ? " adamw8bit" : " adamw";
  n += trained == TrainedPart::lora ? " lora" : trained == TrainedPart::qlora ? " qlora" : "";
  return n;
}

std::vector<MemoryVariant> all_memory_variants() {
  std::vector<MemoryVariant> out;
  for (bool bf16 : {false, true})
    for (bool ckpt : {false, true})
      for (bool q8 : {false, true}) out.push_back({bf16, ckpt, q8});
  return out;
}

std::vector<MemoryVariant> adapter_memory_variants() {
  std::vector<MemoryVariant> out;
  for (bool bf16 : {false, true})
    for (TrainedPart t : {TrainedPart::full, TrainedPart::lora, TrainedPart::qlora}) out.push_back({bf16, false, false, t});
  return out;
}

MemoryMeasurement measure_training_step(const models::LlamaConfig& config, const MemoryVariant& variant,
                                        const MemoryRunOptions& options) {
  SL_CHECK(options.micro_batch_size >= 1 && options.sequence_len >= 2, "memory: micro_batch_size ",
           options.micro_batch_size, " and sequence_len ", options.sequence_len,
           " must be >= 1 and >= 2 (one step needs a target token)");
  MemoryLedger& ledger = MemoryLedger::instance();
  const Device cpu = Device::cpu();
  const DeviceMemory before = ledger.snapshot(cpu);
  MemoryMeasurement m;
  m.variant = variant;
  DeviceMemory after;
  {
    auto model = std::make_unique<models::LlamaForCausalLM>(config, options.seed);
    model->set_gradient_checkpointing(variant.gradient_checkpointing);
    if (variant.bf16) model->to(DType::bf16);
    if (variant.trained == TrainedPart::qlora) models::quantize_llama_nf4(*model, variant.bf16 ? DType::bf16 : DType::f32);
    if (variant.trained != TrainedPart::full) {
      nn::LoraSettings lora;  // r = 8, alpha = 16, as configs/tasks/lora.yaml
      lora.target_linear = true;
      lora.seed = options.seed;
      nn::apply_lora(*model, lora);
    }
    std::vector<Tensor> stepped = model->trainable_parameters();
    for (const Tensor& p : stepped) m.num_parameters += p.numel();
    std::unique_ptr<nn::MasterWeights> masters;
    if (variant.bf16) {
      masters = std::make_unique<nn::MasterWeights>(stepped);
      stepped = masters->masters();
    }
    std::unique_ptr<nn::Optimizer> optimizer;
    if (variant.adamw_8bit) optimizer = std::make_unique<nn::AdamW8bit>(stepped, 1e-3);
    else optimizer = std::make_unique<nn::AdamW>(stepped, 1e-3);
    RandomTokens data(config.vocab_size, options.micro_batch_size, options.sequence_len, options.seed + 1);
    train::TrainerOptions to;
    to.max_steps = 2;
    to.max_grad_norm = 1.0;
    to.schedule = {nn::LrScheduleKind::constant, 1e-3, 0, 2};
    to.print_progress = false;
    train::Trainer trainer(*model, *optimizer, data, to, {}, {masters.get(), nullptr});
    // A first step creates the optimizer state, so the measured (second) step is the steady state:
    // its forward and backward run while the state is alive, as every later step's do. Peaks from
    // the reset on belong to that step alone (not to building the variant, e.g. the bf16 cast).
    trainer.step();
    ledger.reset_peaks();
    trainer.step();
    after = ledger.snapshot(cpu);
  }
  for (int t = 0; t < kNumMemTags; ++t) {
    m.live[t] = after.tags[t].live - before.tags[t].live;
    m.peak[t] = after.tags[t].peak - before.tags[t].live;
  }
  m.total_live = after.live - before.live;
  m.total_peak = after.peak - before.live;
  return m;
}

std::string memory_table(const std::vector<MemoryMeasurement>& rows) {
  std::string out;
  char buf[256];
  auto header = [&](const char* title, const char* total) {
    out += title;
    std::snprintf(buf, sizeof buf, "%-28s", "variant");
    out += buf;
    for (MemTag t : kShown) {
      std::snprintf(buf, sizeof buf, " %15s", mem_tag_name(t));
      out += buf;
    }
    std::snprintf(buf, sizeof buf, " %15s\n", total);
    out += buf;
  };
  header("live after the step (MiB, over the baseline before building the variant):\n", "total live");
  for (const MemoryMeasurement& m : rows) {
    std::snprintf(buf, sizeof buf, "%-28s", m.variant.name().c_str());
    out += buf;
    for (MemTag t : kShown) {
      std::snprintf(buf, sizeof buf, " %15.3f", mib(m.live_of(t)));
      out += buf;
    }
    std::snprintf(buf, sizeof buf, " %15.3f\n", mib(m.total_live));
    out += buf;
  }
  header("\npeak during the step (MiB, per tag; total peak = peak of the sum):\n", "total peak");
  for (const MemoryMeasurement& m : rows) {
    std::snprintf(buf, sizeof buf, "%-28s", m.variant.name().c_str());
    out += buf;
    for (MemTag t : kShown) {
      std::snprintf(buf, sizeof buf, " %15.3f", mib(m.peak_of(t)));
      out += buf;
    }
    std::snprintf(buf, sizeof buf, " %15.3f\n", mib(m.total_peak));
    out += buf;
  }
  out += "\nbytes per trainable parameter after the step:\n";
  std::snprintf(buf, sizeof buf, "%-28s %15s %15s %15s\n", "variant", "parameter", "gradient", "optimizer_state");
  out += buf;
  for (const MemoryMeasurement& m : rows) {
    const double p = static_cast<double>(m.num_parameters);
    std::snprintf(buf, sizeof buf, "%-28s %15.3f %15.3f %15.3f\n", m.variant.name().c_str(),
                  m.live_of(MemTag::parameter) / p, m.live_of(MemTag::gradient) / p,
                  m.live_of(MemTag::optimizer_state) / p);
    out += buf;
  }
  return out;
}

estimate::EstimateSetup estimate_setup_of(const models::LlamaConfig& config, const MemoryVariant& variant,
                                          const MemoryRunOptions& options) {
  estimate::EstimateSetup s;
  s.model = config;
  s.precision = variant.bf16 ? estimate::Precision::bf16_masters : estimate::Precision::f32;
  s.optimizer = variant.adamw_8bit ? estimate::OptimizerKind::adamw_8bit : estimate::OptimizerKind::adamw;
  s.adapter = variant.trained == TrainedPart::lora    ? estimate::AdapterKind::lora
              : variant.trained == TrainedPart::qlora ? estimate::AdapterKind::qlora
                                                      : estimate::AdapterKind::none;
  s.lora_r = 8;  // as measure_training_step's LoraSettings
  s.gradient_checkpointing = variant.gradient_checkpointing;
  s.micro_batch_size = options.micro_batch_size;
  s.sequence_len = options.sequence_len;
  return s;
}

double estimate_error(const estimate::MemoryEstimate& estimate, const MemoryMeasurement& measured, MemTag tag) {
  const double m = static_cast<double>(measured.peak_of(tag)), e = estimate.of(tag);
  if (m == 0) return e == 0 ? 0.0 : 1.0;
  return (e - m) / m;
}

std::string estimate_vs_measured_table(const models::LlamaConfig& config, const std::vector<MemoryMeasurement>& rows,
                                       const MemoryRunOptions& options) {
  static constexpr MemTag kMajor[] = {MemTag::parameter, MemTag::gradient, MemTag::optimizer_state, MemTag::activation};
  std::string out = "estimate vs measured peak (MiB; error = (estimate - measured) / measured):\n";
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-28s", "variant");
  out += buf;
  for (MemTag t : kMajor) {
    std::snprintf(buf, sizeof buf, " %27s", mem_tag_name(t));
    out += buf;
  }
  out += "\n";
  for (const MemoryMeasurement& m : rows) {
    const estimate::MemoryEstimate e = estimate::estimate_memory(estimate_setup_of(config, m.variant, options));
    std::snprintf(buf, sizeof buf, "est %-24s", m.variant.name().c_str());
    out += buf;
    for (MemTag t : kMajor) {
      std::snprintf(buf, sizeof buf, " %9.3f/%9.3f %+6.1f%%", e.of(t) / 1048576.0, mib(m.peak_of(t)),
                    100.0 * estimate_error(e, m, t));
      out += buf;
    }
    out += "\n";
  }
  return out;
}

}  // namespace shardlab::cli
