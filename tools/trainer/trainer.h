// The training loop: optimizer steps made of gradient-accumulation micro batches, the loss of a
// step normalised by the target tokens of the whole step, clipping, LR schedule, evaluation,
// progress lines and a JSONL log, and checkpoints that resume bit-exactly; optionally data parallel
// over the ranks of a process group through a dist::DataParallelEngine (DDP, ZeRO-1, ZeRO-2).
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/json.h"
#include "distributed/data_parallel.h"
#include "models/llama.h"
#include "nn/loss_scaler.h"
#include "nn/lr_schedule.h"
#include "nn/master_weights.h"
#include "nn/optimizer.h"

namespace shardlab::train {

// One micro batch.
struct MicroBatch {
  models::LlamaInputs inputs;
  Tensor labels;  // (B, T) i64, -100 = not a target
  int64_t num_target_tokens = 0;  // targets after the one-token shift
  // The same batch with its tensors on `device` (batches are built on the host).
  MicroBatch to(Device device) const;
};

// Where micro batches come from. Its state (epoch, position, ...) is saved in checkpoints.
class BatchStream {
 public:
  virtual ~BatchStream() = default;
  virtual MicroBatch next() = 0;
  virtual json::Value state() const = 0;
  virtual void restore(const json::Value& state) = 0;
  virtual int64_t epoch() const { return 0; }
};

// How checkpoints hold the model and the optimizer (accelerate's fsdp_state_dict_type).
enum class StateDictType {
  // FULL_STATE_DICT: the model as a Hugging Face checkpoint (or PEFT adapter), gathered onto rank 0
  // one bucket at a time; optimizer state per rank in the engine's layout (resume needs the same
  // world size, preset and bucket size).
  full,
  // SHARDED_STATE_DICT: every rank writes its pieces of the parameters and optimizer state,
  // unflattened and unpadded, with an index (distributed/sharded_checkpoint.h); any world size and
  // preset, or one process, resumes from it, and `shardlab convert` turns it into an HF checkpoint.
  sharded,
};

struct TrainerOptions {
  int64_t max_steps = 1;
  int64_t gradient_accumulation_steps = 1;
  double max_grad_norm = 0.0;  // 0: no clipping (the norm is still measured and logged)
  nn::LrSchedule schedule;
  int64_t logging_steps = 1;
  int64_t eval_steps = 0;      // 0: evaluate only at the end (when an eval function is given)
  int64_t save_steps = 0;      // 0: save only at the end
  std::string output_dir;      // empty: no log file, no checkpoints
  bool print_progress = true;
  // Adapter runs (LoRA/QLoRA) keep only the trainable weights: when set, checkpoints save and load
  // them through these (a PEFT adapter) instead of the full model's config.json + model.safetensors.
  std::function<void(const std::string& dir)> save_weights, load_weights;
  StateDictType state_dict_type = StateDictType::full;
  // Where the model lives (moved there before the optimizer was built): each micro batch is moved
  // there before its forward.
  Device device = Device::cpu();
  // Called on every rank with the finished temporary checkpoint directory just before rank 0 renames
  // it into place (tests throw here to simulate a crash mid-save).
  std::function<void(const std::string& tmp_dir)> before_checkpoint_rename;
};

// With a data-parallel engine, loss, tokens and target_tokens are global (all ranks' micro batches).
struct StepStats {
  int64_t step = 0;        // 1-based optimizer step
  double loss = 0.0;       // mean over the step's target tokens
  double lr = 0.0;
  double grad_norm = 0.0;  // before clipping
  int64_t tokens = 0;      // input tokens processed in the step
  int64_t target_tokens = 0;
  double seconds = 0.0;
  double eval_loss = -1.0; // -1 when not evaluated at this step
  double loss_scale = 1.0; // fp16 dynamic loss scale used in the step
  bool skipped = false;    // fp16 overflow: no parameter changed
};

// 16-bit training: the optimizer steps fp32 masters of the model's bf16/f16 parameters; fp16 adds
// a loss scaler. Both null: plain training in the model's dtype.
struct MixedPrecision {
  nn::MasterWeights* masters = nullptr;
  nn::DynamicLossScaler* scaler = nullptr;
};

class Trainer {
 public:
  // eval_fn returns the mean validation loss (optional).
  // With mixed precision, `optimizer` must step precision.masters->masters().
  // With a data-parallel `engine` (built on model's parameters), `optimizer` must step
  // engine->optimizer_params(), precision.masters must be null (the engine keeps the fp32 masters,
  // sharded) and `data` yields this rank's micro batches. Each rank's loss is divided by the global
  // target-token count and gradients are summed, so N ranks match one process on the global batch.
  // Rank 0 alone prints and writes log.jsonl; checkpoints get one optimizer file per rank.
  Trainer(models::LlamaForCausalLM& model, nn::Optimizer& optimizer, BatchStream& data, TrainerOptions options,
          std::function<double()> eval_fn = {}, MixedPrecision precision = {},
          dist::DataParallelEngine* engine = nullptr);

  // One optimizer step. Gradients stay in .grad until the next step starts (tests read them).
  StepStats step();
  // Steps until max_steps with logging, evaluation and checkpoints (the last one at the end).
  void run();

  // checkpoint-N: config.json + model.safetensors (HF format), optimizer.safetensors,
  // trainer_state.json (step, data position, loss history). Written under a temporary name and
  // renamed, so an interrupted save leaves the previous checkpoint untouched. With an engine,
  // the model is gathered onto rank 0 bucket by bucket, rank 0 writes it and trainer_state.json, every rank R its optimizer shard (and fp32
  // master shard) as optimizer-rank-R.safetensors and its data position as data-rank-R.json;
  // resuming needs the same world size, preset and bucket size. With StateDictType::sharded the
  // directory holds index.json, shard-rank-R.safetensors, data-rank-R.json, config.json and
  // trainer_state.json instead (adapter runs: also the whole PEFT adapter, which is small), and
  // load_checkpoint accepts any world size and preset.
  std::string save_checkpoint() const;
  void load_checkpoint(const std::string& checkpoint_dir);

  int64_t global_step() const { return step_; }
  const std::vector<StepStats>& history() const { return history_; }

 private:
  void log(const StepStats& s);
  // The data-parallel half of step(): reduction, global overflow/norm, shard step, all-gather.
  void finish_data_parallel_step(StepStats& s);
  bool is_rank0() const { return engine_ == nullptr || engine_->group().rank() == 0; }
  void barrier() const;
  // Rank 0's part of a checkpoint: the model, the single-process optimizer/master files, trainer_state.json.
  void write_checkpoint_files(const std::filesystem::path& tmp_dir) const;
  // FULL_STATE_DICT resume: the model, the optimizer (per rank with an engine), masters, data.
  void load_full_checkpoint(const std::string& checkpoint_dir, json::Ref trainer_state);

  models::LlamaForCausalLM& model_;
  nn::Optimizer& optimizer_;
  BatchStream& data_;
  TrainerOptions options_;
  std::function<double()> eval_fn_;
  MixedPrecision precision_;
  dist::DataParallelEngine* engine_;
  int64_t step_ = 0;
  std::vector<StepStats> history_;
  double run_started_ = 0.0;
  int64_t run_start_step_ = 0;
};

// The mean next-token loss of `model` over `batches` (no grad, eval mode), on the model's device.
double evaluate(models::LlamaForCausalLM& model, const std::vector<MicroBatch>& batches);

}  // namespace shardlab::train
