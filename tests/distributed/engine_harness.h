// Shared by the engine tests (world size 1 here, 2 and 4 ranks in engine_ranks/): a small MLP
// trained through the data-parallel engine on this rank's micro batches, and the same MLP trained
// by one plain process on the global batch (all ranks' micro batches), computed in-process.
#pragma once

#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions.h"
#include "distributed/data_parallel_setup.h"
#include "nn/linear.h"
#include "nn/master_weights.h"
#include "nn/optimizer_8bit.h"

namespace shardlab::dist::testing {

struct RunConfig {
  Preset preset = Preset::ddp;
  DType dtype = DType::f32;
  std::optional<DType> reduce_dtype;  // unset: the parameters' dtype
  int64_t bucket_size = 200;  // elements: several buckets for the 891-parameter MLP
  int accumulation = 2;       // micro batches per step on every rank
  double max_grad_norm = 0.5; // small enough that clipping is active; 0: no clipping
  double lr = 1e-2;
  bool frozen_layer = false;  // a 24x24 linear with requires_grad false (as LoRA leaves base weights)
  bool overlap_comm = true;
  bool record_events = false;
  OptimizerStateKind optimizer = OptimizerStateKind::adamw;
};

// 8 -> 24 -> 24 -> 3 with SiLU; 891 trained parameters (odd: buckets need padding) (+ 576 frozen with frozen_layer).
struct Mlp {
  explicit Mlp(const RunConfig& c)
      : l1(8, 24, true, 11, c.dtype), l2(24, 24, true, 12, c.dtype), l3(24, 3, true, 13, c.dtype),
        frozen(24, 24, false, 14, c.dtype), use_frozen(c.frozen_layer) {
    for (const auto& [name, t] : frozen.named_parameters()) t.set_requires_grad(false);
  }
  std::vector<Tensor> parameters() const {
    std::vector<Tensor> out;
    for (const nn::Linear* l : {&l1, &l2, &l3, &frozen})
      for (const auto& [name, t] : l->named_parameters()) out.push_back(t);
    return out;
  }
  std::vector<Tensor> trained() const {
    std::vector<Tensor> out;
    for (const Tensor& t : parameters())
      if (t.requires_grad()) out.push_back(t);
    return out;
  }
  Tensor forward(const Tensor& x) {
    Tensor h = silu(l1.forward(x));
    if (use_frozen) h = h + frozen.forward(h);
    return l3.forward(silu(l2.forward(h)));
  }
  nn::Linear l1, l2, l3, frozen;
  bool use_frozen;
};

// Rank r's micro batch i of step s: a different number of rows per (s, r, i), so ranks hold
// different target counts and only a GLOBAL normalisation can match the reference.
struct Batch {
  Tensor x, y;
  int64_t count;
};
inline Batch batch(int step, int rank, int micro, DType dtype) {
  const int64_t rows = 2 + (step + 2 * rank + micro) % 3;
  const uint64_t seed = 1000 + 97 * step + 13 * rank + micro;
  return {Tensor::randn({rows, 8}, seed, dtype), Tensor::randn({rows, 3}, seed + 500, DType::f32), rows * 3};
}
inline Tensor loss_sum(Mlp& m, const Batch& b) {
  Tensor d = to_dtype(m.forward(b.x), DType::f32) - b.y;
  return sum(d * d);
}

inline const char* optimizer_name(OptimizerStateKind k) {
  switch (k) {
    case OptimizerStateKind::adamw: return "adamw";
    case OptimizerStateKind::adamw_8bit: return "adamw_8bit";
    case OptimizerStateKind::sgd: return "sgd";
    case OptimizerStateKind::sgd_momentum: return "sgd+momentum";
  }
  return "?";
}

inline std::unique_ptr<nn::Optimizer> make_optimizer(const RunConfig& c, std::vector<Tensor> params) {
  switch (c.optimizer) {
    case OptimizerStateKind::adamw: return std::make_unique<nn::AdamW>(std::move(params), c.lr);
    case OptimizerStateKind::adamw_8bit: return std::make_unique<nn::AdamW8bit>(std::move(params), c.lr);
    case OptimizerStateKind::sgd: return std::make_unique<nn::SGD>(std::move(params), c.lr);
    case OptimizerStateKind::sgd_momentum: return std::make_unique<nn::SGD>(std::move(params), c.lr, 0.9);
  }
  return nullptr;
}

struct StepHooks {
  std::function<void(int micro)> after_backward;  // after each micro batch's backward
  std::function<void()> after_reduction;          // reduced gradients in place, before the step
};

struct StepResult {
  double loss = 0;
  double grad_norm = 0;
  bool skipped = false;
};

// The MLP trained through the engine on `group`'s rank.
class EngineRun {
 public:
  EngineRun(ProcessGroup& group, const RunConfig& c) : c_(c), model_(c) {
    DataParallelOptions o;
    o.preset = c.preset;
    o.reduce_bucket_size = c.bucket_size;
    o.allgather_bucket_size = 2 * c.bucket_size;
    o.overlap_comm = c.overlap_comm;
    o.record_events = c.record_events;
    o.reduce_dtype = c.reduce_dtype;
    engine_ = std::make_unique<DataParallelEngine>(model_.parameters(), group, o);
    optimizer_ = make_optimizer(c, engine_->optimizer_params());
  }
  StepResult step(int s, const StepHooks& hooks = {}) {
    ProcessGroup& g = engine_->group();
    std::vector<Batch> micro;
    double count = 0;
    for (int i = 0; i < c_.accumulation; ++i) {
      micro.push_back(batch(s, g.rank(), i, c_.dtype));
      count += static_cast<double>(micro.back().count);
    }
    const double global_count = engine_->sum_across_ranks(count);
    engine_->zero_grad();
    double loss = 0;
    for (int i = 0; i < c_.accumulation; ++i) {
      engine_->set_gradient_sync(i + 1 == c_.accumulation);
      Tensor l = loss_sum(model_, micro[i]);
      loss += l.item();
      backward(l * (1.0 / global_count));
      if (hooks.after_backward) hooks.after_backward(i);
    }
    StepResult r;
    r.loss = engine_->sum_across_ranks(loss) / global_count;
    engine_->wait_for_gradients();
    if (hooks.after_reduction) hooks.after_reduction();
    r.skipped = engine_->unscale_gradients(1.0);
    if (r.skipped) {
      engine_->zero_grad();
      return r;
    }
    r.grad_norm = engine_->clip_grad_norm(c_.max_grad_norm);
    optimizer_->step();
    engine_->update_parameters();
    return r;
  }
  std::vector<std::vector<double>> parameters() const {
    std::vector<std::vector<double>> out;
    for (const Tensor& t : model_.parameters()) out.push_back(t.to_double_vector());
    return out;
  }
  Mlp& model() { return model_; }
  DataParallelEngine& engine() { return *engine_; }
  nn::Optimizer& optimizer() { return *optimizer_; }

 private:
  RunConfig c_;
  Mlp model_;
  std::unique_ptr<DataParallelEngine> engine_;
  std::unique_ptr<nn::Optimizer> optimizer_;
};

// The same training in one plain process on the global batch of `world` ranks (no engine, no
// communication): grads accumulate over every rank's micro batches, clip_grad_norm, optimizer step
// (through fp32 masters for 16-bit models, as the single-process Trainer does).
inline std::vector<std::vector<double>> reference_parameters(int world, const RunConfig& c, int steps,
                                                             std::vector<double>* losses = nullptr) {
  Mlp m(c);
  const bool masters_needed = c.dtype != DType::f32;
  std::unique_ptr<nn::MasterWeights> masters;
  std::vector<Tensor> stepped = m.trained();
  if (masters_needed) {
    masters = std::make_unique<nn::MasterWeights>(stepped);
    stepped = masters->masters();
  }
  std::unique_ptr<nn::Optimizer> opt = make_optimizer(c, stepped);
  for (int s = 0; s < steps; ++s) {
    opt->zero_grad();
    if (masters) masters->zero_grad();
    double count = 0, loss = 0;
    for (int r = 0; r < world; ++r)
      for (int i = 0; i < c.accumulation; ++i) count += static_cast<double>(batch(s, r, i, c.dtype).count);
    for (int i = 0; i < c.accumulation; ++i)
      for (int r = 0; r < world; ++r) {
        Tensor l = loss_sum(m, batch(s, r, i, c.dtype));
        loss += l.item();
        backward(l * (1.0 / count));
      }
    if (losses) losses->push_back(loss / count);
    if (masters) masters->grads_to_masters();
    if (c.max_grad_norm > 0) nn::clip_grad_norm(stepped, c.max_grad_norm);
    opt->step();
    if (masters) masters->masters_to_model();
  }
  std::vector<std::vector<double>> out;
  for (const Tensor& t : m.parameters()) out.push_back(t.to_double_vector());
  return out;
}

// Largest |a - b| over every element of every tensor.
inline double max_abs_difference(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
  double worst = 0;
  for (size_t t = 0; t < a.size(); ++t)
    for (size_t i = 0; i < a[t].size(); ++i) worst = std::max(worst, std::abs(a[t][i] - b[t][i]));
  return worst;
}

}  // namespace shardlab::dist::testing
