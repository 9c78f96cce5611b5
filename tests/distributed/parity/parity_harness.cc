// The parity harness (see parity_harness.h): an engine run and a plain single-process reference,
// step by step, with the first divergence agreed across ranks.
#include "tests/distributed/parity/parity_harness.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <sstream>

#include "autograd/engine.h"
#include "distributed/host_staged_process_group.h"
#include "autograd/functions.h"
#include "core/error.h"
#include "distributed/data_parallel.h"
#include "models/data_loader.h"
#include "models/llama.h"
#include "nn/lora.h"
#include "nn/optimizer.h"

namespace shardlab::parity {

namespace {

constexpr double kLearningRate = 1e-3;
constexpr double kWeightDecay = 0.01;
constexpr double kMaxGradNorm = 1.0;  // the fresh model's gradient norm is above it: clipping acts
constexpr int64_t kSequenceLen = 32;
constexpr uint64_t kModelSeed = 1234;

// ~150K parameters: two layers with grouped-query attention, a byte-sized vocabulary.
models::LlamaConfig tiny_llama() {
  models::LlamaConfig c;
  c.vocab_size = 256;
  c.hidden_size = 64;
  c.intermediate_size = 160;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = kSequenceLen;
  return c;
}

std::unique_ptr<models::LlamaForCausalLM> build_model(const ParityCase& c) {
  auto model = std::make_unique<models::LlamaForCausalLM>(tiny_llama(), kModelSeed);
  if (c.lora) {
    nn::LoraSettings s;
    s.r = 4;
    s.alpha = 8;
    s.dropout = 0.0;  // dropout masks are drawn per rank's rows: parity needs none
    s.target_modules = {"q_proj", "v_proj"};
    s.seed = 7;
    nn::apply_lora(*model, s);
  }
  model->set_gradient_checkpointing(c.checkpointing);
  return model;
}

// Rows of 8 to kSequenceLen tokens, the first two of each not targets (a "prompt"), from a fixed
// generator, so every rank builds the same list.
std::vector<models::Sample> make_samples(int64_t n) {
  std::vector<models::Sample> samples;
  uint64_t state = 0x9E3779B97F4A7C15ull;
  const auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  for (int64_t i = 0; i < n; ++i) {
    models::Sample s;
    const int64_t len = 8 + static_cast<int64_t>(next() % (kSequenceLen - 7));
    for (int64_t t = 0; t < len; ++t) {
      // A little structure (token t+1 often follows t) so the loss moves in a few steps.
      const int64_t token = t > 0 && next() % 2 == 0 ? (s.input_ids.back() + 1) % 256 : static_cast<int64_t>(next() % 256);
      s.input_ids.push_back(token);
      s.labels.push_back(t < 2 ? -100 : token);
    }
    samples.push_back(std::move(s));
  }
  return samples;
}

models::DataLoader make_loader(int64_t micro_batch_size, int64_t rank, int64_t world_size) {
  models::LoaderOptions o;
  o.micro_batch_size = micro_batch_size;
  o.sequence_len = kSequenceLen;
  o.seed = 42;
  o.rank = rank;
  o.world_size = world_size;
  return models::DataLoader(make_samples(96), o);
}

models::LlamaInputs inputs_of(const models::Batch& b) { return {b.input_ids, b.positions, b.segment_ids}; }

std::vector<models::Batch> next_micro_batches(models::DataLoader& loader, int64_t k, int64_t& target_tokens) {
  std::vector<models::Batch> micro;
  target_tokens = 0;
  for (int64_t i = 0; i < k; ++i) {
    micro.push_back(loader.next());
    target_tokens += micro.back().num_target_tokens;
  }
  return micro;
}

// The reference: one process, micro_batch_size W*B, no engine; the trainer's normalisation (each
// micro batch's token-loss sum divided by the step's target tokens) and torch's clipping.
struct StepFigures {
  double loss = 0.0;
  double grad_norm = 0.0;  // before clipping
};

StepFigures reference_step(models::LlamaForCausalLM& model, nn::AdamW& optimizer, models::DataLoader& loader, int64_t k) {
  optimizer.zero_grad();
  int64_t tokens = 0;
  const std::vector<models::Batch> micro = next_micro_batches(loader, k, tokens);
  double loss = 0.0;
  for (const models::Batch& b : micro) {
    auto [sum, n] = model.loss_sum(inputs_of(b), b.labels);
    loss += sum.item();
    backward(sum * (1.0 / static_cast<double>(tokens)));
  }
  const double norm = nn::clip_grad_norm(optimizer.params(), kMaxGradNorm);
  optimizer.step();
  return {loss / static_cast<double>(tokens), norm};
}

// The engine run, as data_parallel.h's usage: every rank divides by the GLOBAL token count.
StepFigures engine_step(models::LlamaForCausalLM& model, dist::DataParallelEngine& engine, nn::AdamW& optimizer,
                   models::DataLoader& loader, int64_t k, Device device) {
  engine.zero_grad();
  int64_t local_tokens = 0;
  const std::vector<models::Batch> micro = next_micro_batches(loader, k, local_tokens);
  const double tokens = engine.sum_across_ranks(static_cast<double>(local_tokens));
  double loss = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    engine.set_gradient_sync(i == k - 1);
    const models::LlamaInputs in = inputs_of(micro[i]);
    const auto on = [device](const Tensor& t) { return t.defined() ? t.to(device) : t; };
    auto [sum, n] = model.loss_sum({on(in.input_ids), on(in.positions), on(in.segment_ids)}, on(micro[i].labels));
    loss += sum.item();
    backward(sum * (1.0 / tokens));
  }
  engine.wait_for_gradients();
  engine.unscale_gradients(1.0);
  const double norm = engine.clip_grad_norm(kMaxGradNorm);
  optimizer.step();
  engine.update_parameters();
  return {engine.sum_across_ranks(loss) / tokens, norm};
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_double_vector(), y = b.to_double_vector();
  double d = 0.0;
  for (size_t i = 0; i < x.size(); ++i) d = std::max(d, std::abs(x[i] - y[i]));
  return d;
}

void add_to_every_element(const Tensor& t, float delta) {
  SL_CHECK(t.dtype() == DType::f32 && t.is_contiguous(), "parity injection: needs a contiguous f32 parameter");
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] += delta;
  t.bump_version();
}

// A local divergence as a sortable key: step-major, then the slot (loss, grad_norm, parameters).
struct LocalFirst {
  double key = std::numeric_limits<double>::infinity();
  double diff = 0.0;
};

}  // namespace

std::string Divergence::message() const {
  std::ostringstream s;
  s << "first divergence at step " << step << ", tensor " << tensor << ": max abs diff " << max_abs_diff
    << " (tolerance " << tolerance << ") on rank " << rank;
  return s.str();
}

std::string ParityReport::describe() const {
  std::ostringstream s;
  s << losses.size() << " steps, " << trained_parameters << " trained elements in " << units << " buckets, loss "
    << (losses.empty() ? 0.0 : losses.front()) << " -> " << (losses.empty() ? 0.0 : losses.back())
    << ", max |loss diff| " << max_loss_diff << " (tol " << kLossTolerance << "), max grad-norm diff "
    << max_grad_norm_diff << " (tol " << kGradNormTolerance << "), max |param diff| " << max_param_diff << " (tol "
    << kParameterTolerance << "), max |param change| " << max_param_change;
  if (first) s << "; " << first->message();
  return s.str();
}

std::string case_name(const ParityCase& c) {
  return std::string(dist::preset_name(c.preset)) + (c.lora ? "/lora" : "/full") + "/accum" +
         std::to_string(c.gradient_accumulation_steps) + (c.checkpointing ? "/checkpointing" : "") +
         (c.wrap == dist::WrapPolicy::per_parameter ? "/per_parameter" : "") +
         (c.hybrid_shard_group_size > 0 ? "/group" + std::to_string(c.hybrid_shard_group_size) : "") +
         (c.offload_param ? "/offload_param" : c.offload_optimizer ? "/offload_optimizer" : "");
}

ParityReport run_parity(dist::ProcessGroup& group, const ParityCase& c) {
  const int world = group.size(), rank = group.rank();
  const int64_t k = c.gradient_accumulation_steps;

  auto reference = build_model(c);
  nn::AdamW reference_opt(reference->trainable_parameters(), kLearningRate, 0.9, 0.999, 1e-8, kWeightDecay);
  reference_opt.set_lr(kLearningRate);
  models::DataLoader reference_data = make_loader(c.micro_batch_size * world, 0, 1);

  auto model = build_model(c);
  if (!c.device.is_cpu()) model->to(c.device);
  // A device run's collectives go through host staging (the harness does not own `group`).
  const std::shared_ptr<dist::ProcessGroup> engine_group =
      dist::for_device(std::shared_ptr<dist::ProcessGroup>(&group, [](dist::ProcessGroup*) {}), c.device);
  dist::DataParallelOptions options;
  options.preset = c.preset;
  options.reduce_bucket_size = 8192;  // several buckets, some parameters larger than one
  options.allgather_bucket_size = 16384;
  options.overlap_comm = true;
  options.hybrid_shard_group_size = c.hybrid_shard_group_size;
  options.wrap = c.wrap;
  options.prefetch_bucket_size = c.prefetch_bucket_size;
  options.param_persistence_threshold = c.param_persistence_threshold;
  options.offload_optimizer = c.offload_optimizer;
  options.offload_param = c.offload_param;
  dist::DataParallelEngine engine(*model, *engine_group, options);
  nn::AdamW optimizer(engine.optimizer_params(), kLearningRate, 0.9, 0.999, 1e-8, kWeightDecay);
  optimizer.set_lr(kLearningRate);
  models::DataLoader data = make_loader(c.micro_batch_size, rank, world);

  ParityReport report;
  report.trained_parameters = engine.trained_numel();
  report.units = static_cast<int>(engine.buckets().size());
  const nn::NamedTensors reference_params = reference->named_parameters();
  std::vector<std::vector<double>> initial;
  for (const auto& named : reference_params) initial.push_back(named.second.to_double_vector());
  // Per step: slot 0 the loss, slot 1 the gradient norm, slot 2 + i parameter i.
  const int64_t slots = static_cast<int64_t>(reference_params.size()) + 2;
  const auto slot_name = [&](int64_t slot) {
    return slot == 0 ? std::string("loss") : slot == 1 ? std::string("grad_norm") : reference_params[slot - 2].first;
  };
  const auto slot_tolerance = [](int64_t slot) {
    return slot == 0 ? kLossTolerance : slot == 1 ? kGradNormTolerance : kParameterTolerance;
  };
  LocalFirst first;
  for (int64_t step = 1; step <= c.steps; ++step) {
    const StepFigures want = reference_step(*reference, reference_opt, reference_data, k);
    const StepFigures got = engine_step(*model, engine, optimizer, data, k, c.device);
    report.reference_losses.push_back(want.loss);
    report.losses.push_back(got.loss);
    // zero3 / hybrid_shard: the trained parameters are shards between uses; gather them to compare.
    engine.gather_full_parameters();
    if (c.inject && c.inject->step == step && c.inject->rank == rank) {
      const nn::NamedTensors params = model->named_parameters();
      auto it = std::find_if(params.begin(), params.end(), [&](const auto& p) { return p.first == c.inject->tensor; });
      SL_CHECK(it != params.end(), "parity injection: no parameter named ", c.inject->tensor);
      add_to_every_element(it->second, c.inject->delta);
      if (dist::shards_parameters(c.preset)) engine.reload_masters_from_model();  // into this rank's shard
    }

    const auto note = [&](int64_t slot, double diff) {
      const double key = static_cast<double>((step - 1) * slots + slot);
      if (diff > slot_tolerance(slot) && key < first.key) first = {key, diff};
    };
    const double loss_diff = std::abs(got.loss - want.loss);
    const double norm_diff = std::abs(got.grad_norm - want.grad_norm) / std::max(1.0, want.grad_norm);
    report.max_loss_diff = std::max(report.max_loss_diff, loss_diff);
    report.max_grad_norm_diff = std::max(report.max_grad_norm_diff, norm_diff);
    note(0, loss_diff);
    note(1, norm_diff);
    const nn::NamedTensors params = model->named_parameters();
    SL_CHECK(params.size() == reference_params.size(), "parity: the engine's model has ", params.size(),
             " parameters, the reference ", reference_params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      SL_CHECK(params[i].first == reference_params[i].first, "parity: parameter ", i, " is ", params[i].first,
               " in the engine's model but ", reference_params[i].first, " in the reference");
      const double d = max_abs_diff(params[i].second, reference_params[i].second);
      report.max_param_diff = std::max(report.max_param_diff, d);
      note(static_cast<int64_t>(i) + 2, d);
    }
    engine.free_full_parameters();
  }
  const Device optimizer_device = c.offload_optimizer || c.offload_param ? Device::cpu() : c.device;
  report.state_where_expected = true;
  if (const dist::ShardedUnits* units = engine.sharded_units())
    for (size_t u = 0; u < units->layouts().size(); ++u) {
      const Device shards_on = c.offload_param ? Device::cpu() : c.device;
      report.state_where_expected &= units->parameter_shard(static_cast<int>(u)).device() == shards_on &&
                                     units->grad_shard(static_cast<int>(u)).device() == shards_on;
      // Offloaded shards cross to the device every step: pinned host memory.
      if (c.offload_param)
        report.state_where_expected &= units->parameter_shard(static_cast<int>(u)).is_pinned() &&
                                       units->grad_shard(static_cast<int>(u)).is_pinned();
    }
  if (c.offload_optimizer || c.offload_param)
    for (const auto& [name, master] : engine.master_state()) report.state_where_expected &= master.is_pinned();
  for (const auto& [name, p] : model->named_parameters()) report.state_where_expected &= p.device() == c.device;
  for (const Tensor& s : engine.optimizer_params()) report.state_where_expected &= s.device() == optimizer_device;
  for (const auto& [name, s] : optimizer.state_dict())
    if (name != "step") report.state_where_expected &= s.device() == optimizer_device;
  for (size_t i = 0; i < reference_params.size(); ++i) {
    const std::vector<double> now = reference_params[i].second.to_double_vector();
    for (size_t j = 0; j < now.size(); ++j)
      report.max_param_change = std::max(report.max_param_change, std::abs(now[j] - initial[i][j]));
  }

  // Agree across ranks: the earliest divergence (and which rank saw it), the largest differences.
  constexpr int kFigures = 5;
  Tensor mine = Tensor::from_vector(
      {first.key, first.diff, report.max_loss_diff, report.max_grad_norm_diff, report.max_param_diff}, {kFigures},
      DType::f64);
  Tensor all = Tensor::zeros({kFigures * static_cast<int64_t>(world)}, DType::f64);
  group.all_gather(all, mine)->wait();
  const std::vector<double> v = all.to_double_vector();
  int first_rank = -1;
  for (int r = 0; r < world; ++r) {
    const double* f = &v[kFigures * r];
    report.max_loss_diff = std::max(report.max_loss_diff, f[2]);
    report.max_grad_norm_diff = std::max(report.max_grad_norm_diff, f[3]);
    report.max_param_diff = std::max(report.max_param_diff, f[4]);
    if (std::isfinite(f[0]) && (first_rank < 0 || f[0] < v[kFigures * first_rank])) first_rank = r;
  }
  if (first_rank >= 0) {
    const auto key = static_cast<int64_t>(v[kFigures * first_rank]);
    Divergence d;
    d.step = key / slots + 1;
    d.tensor = slot_name(key % slots);
    d.rank = first_rank;
    d.max_abs_diff = v[kFigures * first_rank + 1];
    d.tolerance = slot_tolerance(key % slots);
    report.first = d;
  }
  return report;
}

}  // namespace shardlab::parity
