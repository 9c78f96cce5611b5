// The training loop (see trainer.h).
#include "tools/trainer/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "autograd/functions.h"
#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "core/trace.h"
#include "distributed/sharded_checkpoint.h"
#include "models/llama_io.h"
#include "tools/trainer/checkpoint_io.h"

namespace shardlab::train {

namespace fs = std::filesystem;

namespace {
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string format_duration(double seconds) {
  char buf[32];
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) std::snprintf(buf, sizeof(buf), "%ldh%02ldm", static_cast<long>(s / 3600), static_cast<long>(s / 60 % 60));
  else std::snprintf(buf, sizeof(buf), "%ldm%02lds", static_cast<long>(s / 60), static_cast<long>(s % 60));
  return buf;
}

json::Value stats_json(const StepStats& s) {
  json::Value v = json::Value::object();
  v.set("step", s.step);
  v.set("loss", s.loss);
  v.set("lr", s.lr);
  if (std::isfinite(s.grad_norm)) v.set("grad_norm", s.grad_norm);
  v.set("tokens", s.tokens);
  v.set("target_tokens", s.target_tokens);
  v.set("seconds", s.seconds);
  if (s.eval_loss >= 0) v.set("eval_loss", s.eval_loss);
  if (s.loss_scale != 1.0) v.set("loss_scale", s.loss_scale);
  if (s.skipped) v.set("skipped", true);
  return v;
}

}  // namespace

Trainer::Trainer(models::LlamaForCausalLM& model, nn::Optimizer& optimizer, BatchStream& data, TrainerOptions options,
                 std::function<double()> eval_fn, MixedPrecision precision, dist::DataParallelEngine* engine)
    : model_(model),
      optimizer_(optimizer),
      data_(data),
      options_(std::move(options)),
      eval_fn_(std::move(eval_fn)),
      precision_(precision),
      engine_(engine) {
  SL_CHECK(precision_.scaler == nullptr || precision_.masters != nullptr ||
               (engine_ != nullptr && engine_->has_master_weights()),
           "trainer: a loss scaler needs fp32 master weights");
  SL_CHECK(engine_ == nullptr || precision_.masters == nullptr,
           "trainer: with a data-parallel engine the engine keeps the fp32 masters; pass no MasterWeights");
  SL_CHECK(options_.gradient_accumulation_steps >= 1, "trainer: gradient_accumulation_steps must be >= 1");
  SL_CHECK(options_.max_steps >= 1, "trainer: max_steps must be >= 1");
}

StepStats Trainer::step() {
  SL_TRACE_SCOPE("step", step);
  const double start = now_seconds();
  StepStats s;
  s.step = step_ + 1;
  s.lr = options_.schedule.lr_at(step_);
  optimizer_.set_lr(s.lr);
  optimizer_.zero_grad();
  if (precision_.masters != nullptr) precision_.masters->zero_grad();
  if (engine_ != nullptr) engine_->zero_grad();
  model_.train();
  s.loss_scale = precision_.scaler != nullptr ? precision_.scaler->scale() : 1.0;

  // NOTE [loss normalisation]: the step's loss is the sum of token losses over all its micro
  // batches divided by the step's target-token count, so that k micro batches of 1 sequence give
  // the same gradient as one micro batch of k sequences. That needs the count before the first
  // backward, so the step's micro batches are drawn up front (they are only token ids).
  std::vector<MicroBatch> micro;
  for (int64_t i = 0; i < options_.gradient_accumulation_steps; ++i) {
    micro.push_back(data_.next().to(options_.device));
    s.target_tokens += micro.back().num_target_tokens;
    s.tokens += micro.back().inputs.input_ids.numel();
  }
  if (engine_ != nullptr) {
    // Every rank divides by the GLOBAL count, and gradients are summed across ranks.
    const std::vector<double> global =
        engine_->sum_across_ranks({static_cast<double>(s.target_tokens), static_cast<double>(s.tokens)});
    s.target_tokens = static_cast<int64_t>(global[0]);
    s.tokens = static_cast<int64_t>(global[1]);
  }
  SL_CHECK(s.target_tokens > 0, "step ", s.step, ": no target tokens in the step's ", micro.size(),
           " micro batches (every label is -100)");
  const double scale = 1.0 / static_cast<double>(s.target_tokens);
  double loss_sum = 0.0;
  for (size_t i = 0; i < micro.size(); ++i) {
    MemTagScope tag(MemTag::activation);
    auto [sum, count] = [&] { SL_TRACE_SCOPE("forward", step); return model_.loss_sum(micro[i].inputs, micro[i].labels); }();
    const double value = sum.item();
    SL_CHECK(std::isfinite(value), "loss is ", value, " at step ", s.step, " (micro batch ", i + 1,
             "): training diverged; lower the learning rate or check the data");
    loss_sum += value;
    // Data parallel: only the final micro batch's backward communicates.
    if (engine_ != nullptr) engine_->set_gradient_sync(i + 1 == micro.size());
    // fp16: the loss is scaled up so that small gradients survive in 16 bits (unscaled below).
    SL_TRACE_SCOPE("backward", step);
    backward(sum * (scale * s.loss_scale));
  }
  if (engine_ != nullptr) {
    s.loss = engine_->sum_across_ranks(loss_sum) * scale;
    finish_data_parallel_step(s);
    s.seconds = now_seconds() - start;
    return s;
  }
  s.loss = loss_sum * scale;
  if (precision_.masters != nullptr) {
    // Gradients go to the fp32 masters, unscaled; an inf/NaN there skips the step (fp16 overflow).
    const bool overflow = precision_.masters->grads_to_masters(1.0 / s.loss_scale);
    if (precision_.scaler != nullptr) precision_.scaler->update(overflow);
    if (overflow) {
      SL_CHECK(precision_.scaler != nullptr, "gradient is not finite at step ", s.step,
               ": a non-finite gradient would corrupt the weights");
      s.skipped = true;
      s.grad_norm = std::nan("");
      ++step_;
      s.seconds = now_seconds() - start;
      return s;
    }
  }
  {
    SL_TRACE_SCOPE("clip", step);
    s.grad_norm = options_.max_grad_norm > 0 ? nn::clip_grad_norm(optimizer_.params(), options_.max_grad_norm)
                                             : nn::grad_norm(optimizer_.params());
  }
  SL_CHECK(std::isfinite(s.grad_norm), "gradient norm is ", s.grad_norm, " at step ", s.step,
           ": a non-finite gradient would corrupt the weights");
  { SL_TRACE_SCOPE("optimizer step", optimizer); optimizer_.step(); }
  { SL_TRACE_SCOPE("parameter update", step); if (precision_.masters != nullptr) precision_.masters->masters_to_model(); }
  ++step_;
  s.seconds = now_seconds() - start;
  return s;
}

void Trainer::finish_data_parallel_step(StepStats& s) {
  { SL_TRACE_SCOPE("reduce wait", step); engine_->wait_for_gradients(); }
  // The overflow decision is global, so every rank skips (and moves its scale) together.
  const bool overflow = engine_->unscale_gradients(1.0 / s.loss_scale);
  if (precision_.scaler != nullptr) precision_.scaler->update(overflow);
  if (overflow) {
    SL_CHECK(precision_.scaler != nullptr, "gradient is not finite at step ", s.step,
             ": a non-finite gradient would corrupt the weights");
    s.skipped = true;
    s.grad_norm = std::nan("");
    engine_->zero_grad();
    ++step_;
    return;
  }
  { SL_TRACE_SCOPE("clip", step); s.grad_norm = engine_->clip_grad_norm(options_.max_grad_norm); }
  SL_CHECK(std::isfinite(s.grad_norm), "gradient norm is ", s.grad_norm, " at step ", s.step,
           ": a non-finite gradient would corrupt the weights");
  { SL_TRACE_SCOPE("optimizer step", optimizer); optimizer_.step(); }
  { SL_TRACE_SCOPE("parameter update", step); engine_->update_parameters(); }
  ++step_;
}

void Trainer::barrier() const {
  if (engine_ != nullptr) engine_->group().barrier()->wait();
}

void Trainer::log(const StepStats& s) {
  if (!is_rank0()) return;
  if (options_.print_progress && (s.step % options_.logging_steps == 0 || s.step == options_.max_steps)) {
    const double elapsed = now_seconds() - run_started_;
    const int64_t done = s.step - run_start_step_;
    const double eta = done > 0 ? elapsed / done * (options_.max_steps - s.step) : 0.0;
    double tokens = 0;
    for (auto it = history_.rbegin(); it != history_.rend() && it->step > run_start_step_; ++it) tokens += it->tokens;
    std::printf("step %ld/%ld | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | ETA %s",
                static_cast<long>(s.step), static_cast<long>(options_.max_steps), s.loss, s.lr, s.grad_norm,
                elapsed > 0 ? tokens / elapsed : 0.0, format_duration(eta).c_str());
    if (s.eval_loss >= 0) std::printf(" | eval loss %.4f", s.eval_loss);
    if (s.loss_scale != 1.0) std::printf(" | loss scale %g", s.loss_scale);
    if (s.skipped) std::printf(" | skipped (overflow)");
    std::printf("\n");
    std::fflush(stdout);
  }
  if (!options_.output_dir.empty()) {
    fs::create_directories(options_.output_dir);
    std::ofstream out(fs::path(options_.output_dir) / "log.jsonl", std::ios::app);
    out << json::dump(stats_json(s)) << "\n";
  }
}

void Trainer::run() {
  run_started_ = now_seconds();
  run_start_step_ = step_;
  while (step_ < options_.max_steps) {
    StepStats s = step();
    const bool last = step_ == options_.max_steps;
    if (eval_fn_ && ((options_.eval_steps > 0 && step_ % options_.eval_steps == 0) || last)) s.eval_loss = eval_fn_();
    history_.push_back(s);
    log(s);
    if (!options_.output_dir.empty() && ((options_.save_steps > 0 && step_ % options_.save_steps == 0) || last))
      save_checkpoint();
  }
}

std::string Trainer::save_checkpoint() const {
  SL_CHECK(!options_.output_dir.empty(), "save_checkpoint: no output_dir configured");
  const fs::path final_dir = fs::path(options_.output_dir) / ("checkpoint-" + std::to_string(step_));
  // Data parallel: every rank writes into one temporary directory, so its name holds no pid.
  const fs::path tmp_dir =
      final_dir.string() + (engine_ != nullptr ? std::string(".tmp") : ".tmp." + std::to_string(::getpid()));
  if (is_rank0()) {
    fs::remove_all(tmp_dir);
    fs::create_directories(tmp_dir);
  }
  barrier();
  if (options_.state_dict_type == StateDictType::sharded) {
    write_sharded_checkpoint(tmp_dir, model_, optimizer_, engine_, data_);
  } else {
    if (engine_ != nullptr) save_rank_state(tmp_dir, optimizer_, *engine_, data_);
    if (!options_.save_weights) write_full_model(tmp_dir, model_, engine_, model_.config().torch_dtype);
  }
  // An adapter (small) is saved whole in both layouts, from rank 0's model: ZeRO-3 / hybrid gather
  // it around the save (collective).
  const bool gather_model = engine_ != nullptr && options_.save_weights;
  if (gather_model) engine_->gather_full_parameters();
  if (is_rank0()) write_checkpoint_files(tmp_dir);
  if (gather_model) engine_->free_full_parameters();
  barrier();
  if (options_.before_checkpoint_rename) options_.before_checkpoint_rename(tmp_dir.string());
  if (is_rank0()) {
    // Swap the finished directory into place; an older save of the same step is replaced whole.
    if (fs::exists(final_dir)) {
      const fs::path old = final_dir.string() + ".old." + std::to_string(::getpid());
      fs::rename(final_dir, old);
      fs::rename(tmp_dir, final_dir);
      fs::remove_all(old);
    } else {
      fs::rename(tmp_dir, final_dir);
    }
  }
  barrier();
  return final_dir.string();
}

void Trainer::write_checkpoint_files(const fs::path& tmp_dir) const {
  const bool sharded = options_.state_dict_type == StateDictType::sharded;
  // A complete PEFT adapter even in a sharded checkpoint (resuming reads the shards).
  if (options_.save_weights) options_.save_weights(tmp_dir.string());
  if (engine_ == nullptr && !sharded) {
    std::vector<std::pair<std::string, Tensor>> opt_state;
    for (auto& [name, t] : optimizer_.state_dict()) opt_state.emplace_back(name, t);
    save_safetensors((tmp_dir / "optimizer.safetensors").string(), opt_state);
  }
  if (precision_.masters != nullptr && !sharded) {
    // The fp32 masters are the real weights of a 16-bit run; the model file holds their rounding.
    std::vector<std::pair<std::string, Tensor>> masters;
    const std::vector<Tensor>& m = precision_.masters->masters();
    for (size_t i = 0; i < m.size(); ++i) masters.emplace_back(std::to_string(i), m[i]);
    save_safetensors((tmp_dir / "master_weights.safetensors").string(), masters);
  }
  json::Value state = json::Value::object();
  state.set("global_step", step_);
  state.set("data", data_.state());
  if (precision_.scaler != nullptr) {
    const nn::DynamicLossScaler::State ls = precision_.scaler->state();
    json::Value scaler = json::Value::object();
    scaler.set("scale", ls.scale);
    scaler.set("iteration", ls.iteration);
    scaler.set("last_overflow_iteration", ls.last_overflow_iteration);
    scaler.set("hysteresis_left", static_cast<int64_t>(ls.hysteresis_left));
    state.set("loss_scaler", scaler);
  }
  json::Value hist = json::Value::array();
  for (const StepStats& s : history_) hist.push_back(stats_json(s));
  state.set("log_history", hist);
  if (engine_ != nullptr && !sharded) state.set("data_parallel", data_parallel_json(*engine_));
  write_file_atomic((tmp_dir / "trainer_state.json").string(), json::dump_pretty(state) + "\n");
}

void Trainer::load_checkpoint(const std::string& checkpoint_dir) {
  SL_CHECK(fs::is_directory(checkpoint_dir), "resume: checkpoint directory '", checkpoint_dir, "' does not exist");
  const std::string state_path = (fs::path(checkpoint_dir) / "trainer_state.json").string();
  json::Value trainer_state = json::parse_file(state_path);
  json::Ref ref(trainer_state, state_path);
  if (fs::exists(fs::path(checkpoint_dir) / dist::kShardedIndexFile)) {
    // Sharded: any world size and preset; the fp32 masters are the stored parameter values.
    load_sharded_checkpoint(checkpoint_dir, model_, optimizer_, precision_.masters, engine_, data_);
  } else {
    load_full_checkpoint(checkpoint_dir, ref);
  }
  step_ = ref["global_step"].as_int();
  if (precision_.scaler != nullptr) {
    json::Ref ls = ref["loss_scaler"];
    precision_.scaler->load_state({ls["scale"].as_double(), ls["iteration"].as_int(),
                                   ls["last_overflow_iteration"].as_int(), static_cast<int>(ls["hysteresis_left"].as_int())});
  }
  history_.clear();
  for (const json::Value& h : ref["log_history"].as_array()) {
    json::Ref r(h, state_path);
    StepStats s;
    s.step = r["step"].as_int();
    s.loss = r["loss"].as_double();
    s.lr = r["lr"].as_double();
    s.grad_norm = r.get_double("grad_norm", std::nan(""));
    s.loss_scale = r.get_double("loss_scale", 1.0);
    s.skipped = r.get_bool("skipped", false);
    s.tokens = r["tokens"].as_int();
    s.target_tokens = r["target_tokens"].as_int();
    s.seconds = r["seconds"].as_double();
    s.eval_loss = r.get_double("eval_loss", -1.0);
    history_.push_back(s);
  }
}

void Trainer::load_full_checkpoint(const std::string& checkpoint_dir, json::Ref trainer_state) {
  // zero3 / hybrid_shard: the trained parameters are shards between uses; the whole model is
  // gathered to load into, then each rank keeps its part (no-ops for the other presets).
  if (engine_ != nullptr) engine_->gather_full_parameters();
  if (options_.load_weights) options_.load_weights(checkpoint_dir);
  else models::load_llama_weights(model_, checkpoint_dir);
  if (engine_ != nullptr) {
    if (engine_->sharded_units() != nullptr) engine_->reload_masters_from_model();
    engine_->free_full_parameters();
    load_rank_state(checkpoint_dir, trainer_state, optimizer_, *engine_, data_);
  } else {
    SafetensorsFile opt = SafetensorsFile::open((fs::path(checkpoint_dir) / "optimizer.safetensors").string());
    nn::NamedTensors state;
    for (const std::string& name : opt.names()) state.emplace_back(name, opt.get(name));
    optimizer_.load_state_dict(state);
    data_.restore(trainer_state["data"].value());
  }
  if (precision_.masters != nullptr) {
    const std::string path = (fs::path(checkpoint_dir) / "master_weights.safetensors").string();
    SL_CHECK(fs::exists(path), "resume: ", checkpoint_dir, " has no master_weights.safetensors (was it saved by a 16-bit run?)");
    SafetensorsFile masters = SafetensorsFile::open(path);
    NoGradGuard no_grad;
    const std::vector<Tensor>& m = precision_.masters->masters();
    for (size_t i = 0; i < m.size(); ++i) ops::copy_(m[i], masters.get(std::to_string(i)));
    precision_.masters->masters_to_model();
  }
}

MicroBatch MicroBatch::to(Device device) const {
  auto move = [device](const Tensor& t) { return t.defined() ? t.to(device) : t; };
  MicroBatch b = *this;
  b.inputs.input_ids = move(inputs.input_ids);
  b.inputs.positions = move(inputs.positions);
  b.inputs.segment_ids = move(inputs.segment_ids);
  b.labels = move(labels);
  return b;
}

double evaluate(models::LlamaForCausalLM& model, const std::vector<MicroBatch>& batches) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const std::vector<Tensor> params = model.parameters();
  const Device device = params.empty() ? Device::cpu() : params.front().device();
  double total = 0.0;
  int64_t count = 0;
  for (const MicroBatch& batch : batches) {
    const MicroBatch b = batch.to(device);
    auto [sum, n] = model.loss_sum(b.inputs, b.labels);
    total += sum.item();
    count += n;
  }
  model.train(was_training);
  return count > 0 ? total / static_cast<double>(count) : std::nan("");
}

}  // namespace shardlab::train
