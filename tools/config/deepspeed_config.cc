// Merging a DeepSpeed JSON config into the train config.
#include "tools/config/deepspeed_config.h"

#include <cmath>
#include <filesystem>
#include <optional>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json.h"

namespace shardlab::config {

namespace {

using json::Ref;

void only_keys(const Ref& obj, std::initializer_list<std::string_view> known, std::initializer_list<std::string_view> later) {
  for (const std::string& key : obj.keys()) {
    bool ok = false, not_yet = false;
    for (auto k : known) ok |= key == k;
    for (auto k : later) not_yet |= key == k;
    if (not_yet) obj[key].fail("is not supported yet");
    if (!ok) obj[key].fail("is not a known DeepSpeed key here");
  }
}

bool is_auto(const Ref& v) { return v.type() == json::Type::string && v.as_string() == "auto"; }

// A Toggle from `enabled`: true/false, or "auto" (keep the YAML's).
void merge_enabled(const Ref& block, Toggle& yaml_value, bool yaml_explicit, const char* yaml_key) {
  auto enabled = block.get("enabled");
  if (!enabled || is_auto(*enabled)) return;
  const Toggle ds = enabled->as_bool() ? Toggle::on : Toggle::off;
  if (yaml_explicit && yaml_value != Toggle::automatic && yaml_value != ds)
    enabled->fail(std::string("contradicts the YAML's ") + yaml_key + ": " + std::string(to_string(yaml_value)));
  yaml_value = ds;
}

void merge_int(const Ref& root, const char* key, int64_t& yaml_value, bool yaml_explicit, const char* yaml_key) {
  auto v = root.get(key);
  if (!v || is_auto(*v)) return;
  const int64_t ds = v->as_int();
  if (ds < 1) v->fail("must be a positive integer or \"auto\"");
  if (yaml_explicit && ds != yaml_value)
    v->fail("is " + std::to_string(ds) + " but the YAML's " + yaml_key + " is " + std::to_string(yaml_value));
  yaml_value = ds;
}

// A positive element count, or "auto" (nullopt: resolved from the model at startup).
std::optional<int64_t> count_or_auto(const Ref& v) {
  if (is_auto(v)) return std::nullopt;
  const int64_t n = v.as_int();
  if (n < 0) v.fail("must be a non-negative element count or \"auto\"");
  return n;
}

// A key with DeepSpeed's aliases (e.g. stage3_max_live_parameters / max_live_parameters): at most one.
std::optional<Ref> one_of(const Ref& obj, std::initializer_list<std::string_view> names) {
  std::optional<Ref> found;
  for (auto name : names)
    if (auto v = obj.get(name)) {
      if (found) v->fail("repeats \"" + found->path() + "\" under another of DeepSpeed's names for it");
      found = v;
    }
  return found;
}

// A key whose only meaningful value is shardlab's behaviour, e.g. load_from_fp32_weights: true.
void require_bool(const Ref& obj, const char* key, bool wanted, const char* because) {
  if (auto v = obj.get(key); v && v->as_bool() != wanted) v->fail(std::string("must be ") + (wanted ? "true" : "false") + ": " + because);
}

OffloadSettings parse_offload(const Ref& block) {
  only_keys(block, {"device", "pin_memory"},
            {"nvme_path", "buffer_count", "buffer_size", "max_in_cpu", "fast_init", "ratio", "pipeline_read",
             "pipeline_write", "pipeline"});
  OffloadSettings o;
  if (auto d = block.get("device"); d && !d->is_null()) {
    const std::string& name = d->as_string();
    if (name == "none") o.device = OffloadDevice::none;
    else if (name == "cpu") o.device = OffloadDevice::cpu;
    else if (name == "nvme") o.device = OffloadDevice::nvme;
    else d->fail("must be \"none\", \"cpu\" or \"nvme\", got \"" + name + "\"");
  }
  o.pin_memory = block.get_bool("pin_memory", o.pin_memory);
  return o;
}

// zero_optimization, with DeepSpeed's names and defaults (deepspeed/runtime/zero/config.py).
// Stage 3's keys and offload parse so Axolotl's files load; a stage-3 key under stage 0-2 has no
// meaning and is an error, as are ZeRO++/MiCS and deprecated keys.
void parse_zero_optimization(const Ref& zero, DistributedSettings& d) {
  zero.as_object();
  only_keys(zero,
            {"stage", "overlap_comm", "contiguous_gradients", "reduce_scatter", "reduce_bucket_size",
             "allgather_partitions", "allgather_bucket_size", "round_robin_gradients", "load_from_fp32_weights",
             "ignore_unused_parameters", "elastic_checkpoint", "offload_optimizer", "offload_param", "sub_group_size",
             "stage3_prefetch_bucket_size", "prefetch_bucket_size", "stage3_param_persistence_threshold",
             "param_persistence_threshold", "stage3_max_live_parameters", "max_live_parameters",
             "stage3_max_reuse_distance", "max_reuse_distance", "stage3_gather_16bit_weights_on_model_save",
             "gather_16bit_weights_on_model_save", "stage3_gather_fp16_weights_on_model_save"},
            {"cpu_offload", "cpu_offload_params", "cpu_offload_use_pin_memory", "zero_hpz_partition_size",
             "zero_quantized_weights", "zero_quantized_nontrainable_weights", "zero_quantized_gradients",
             "mics_shard_size", "mics_hierarchical_params_gather", "memory_efficient_linear",
             "use_multi_rank_bucket_allreduce", "stage3_model_persistence_threshold", "model_persistence_threshold",
             "legacy_stage1", "pipeline_loading_checkpoint", "override_module_apply", "log_trace_cache_warnings",
             "zeropp_loco_param", "use_all_reduce_for_fetch_params"});
  d.zero_stage = zero.get_int("stage", 0);
  if (d.zero_stage < 0 || d.zero_stage > 3) zero["stage"].fail("must be 0, 1, 2 or 3, got " + std::to_string(d.zero_stage));
  d.overlap_comm = zero.get_bool("overlap_comm", d.zero_stage == 3);  // DeepSpeed: on by default for stage 3 only
  d.contiguous_gradients = zero.get_bool("contiguous_gradients", d.contiguous_gradients);
  d.reduce_scatter = zero.get_bool("reduce_scatter", d.reduce_scatter);
  if (auto v = zero.get("reduce_bucket_size")) d.reduce_bucket_size = count_or_auto(*v);
  d.allgather_partitions = zero.get_bool("allgather_partitions", d.allgather_partitions);
  if (auto v = zero.get("allgather_bucket_size")) {
    d.allgather_bucket_size = v->as_int();
    if (d.allgather_bucket_size < 1) v->fail("must be a positive element count");
  }
  if (d.reduce_bucket_size == 0) zero["reduce_bucket_size"].fail("must be a positive element count or \"auto\"");
  d.round_robin_gradients = zero.get_bool("round_robin_gradients", d.round_robin_gradients);
  require_bool(zero, "load_from_fp32_weights", true, "shardlab resumes from the fp32 masters of a checkpoint");
  require_bool(zero, "ignore_unused_parameters", true, "a parameter without a gradient is reduced as zeros");
  require_bool(zero, "elastic_checkpoint", false, "checkpoints resume with the world size that saved them");

  // Stage 3 and offload.
  const bool stage3 = d.zero_stage == 3;
  const auto stage3_only = [&](std::initializer_list<std::string_view> names) -> std::optional<Ref> {
    auto v = one_of(zero, names);
    if (v && !stage3) v->fail("only applies to ZeRO stage 3, but stage is " + std::to_string(d.zero_stage));
    return v;
  };
  if (auto v = stage3_only({"sub_group_size"})) d.sub_group_size = v->as_int();
  if (auto v = stage3_only({"stage3_prefetch_bucket_size", "prefetch_bucket_size"})) d.stage3_prefetch_bucket_size = count_or_auto(*v);
  if (auto v = stage3_only({"stage3_param_persistence_threshold", "param_persistence_threshold"}))
    d.stage3_param_persistence_threshold = count_or_auto(*v);
  if (auto v = stage3_only({"stage3_max_live_parameters", "max_live_parameters"})) d.stage3_max_live_parameters = v->as_int();
  if (auto v = stage3_only({"stage3_max_reuse_distance", "max_reuse_distance"})) d.stage3_max_reuse_distance = v->as_int();
  if (auto v = stage3_only({"stage3_gather_16bit_weights_on_model_save", "gather_16bit_weights_on_model_save",
                            "stage3_gather_fp16_weights_on_model_save"}))
    d.stage3_gather_16bit_weights_on_model_save = v->as_bool();
  for (const char* key : {"sub_group_size", "stage3_max_live_parameters", "max_live_parameters",
                          "stage3_max_reuse_distance", "max_reuse_distance"})
    if (auto v = zero.get(key); v && v->as_int() < 0) v->fail("must be >= 0");
  if (auto v = zero.get("offload_param")) {
    if (!stage3) v->fail("needs ZeRO stage 3 (parameters are only sharded there), but stage is " + std::to_string(d.zero_stage));
    if (!v->is_null()) d.offload_param = parse_offload(*v);
  }
  if (auto v = zero.get("offload_optimizer")) {
    if (d.zero_stage == 0) v->fail("needs ZeRO stage 1, 2 or 3 (optimizer state is only sharded there), but stage is 0");
    if (!v->is_null()) d.offload_optimizer = parse_offload(*v);
  }
}

}  // namespace

void merge_deepspeed_config(const std::string& path, const ExplicitKeys& explicit_keys, TrainConfig& c) {
  namespace fs = std::filesystem;
  // Only a regular, reasonably sized file: a config never needs more, and a device or a FIFO would hang.
  SL_CHECK(fs::is_regular_file(path), "deepspeed config '", path, "' is not a readable file");
  SL_CHECK(fs::file_size(path) <= (1u << 20), "deepspeed config '", path, "' is larger than 1 MiB");
  const json::Value root_value = json::parse(read_file(path), path);
  const Ref root(root_value, path);
  root.as_object();
  only_keys(root, {"fp16", "bf16", "gradient_accumulation_steps", "gradient_clipping", "train_batch_size",
                   "train_micro_batch_size_per_gpu", "zero_optimization", "steps_per_print", "wall_clock_breakdown",
                   "communication_data_type", "zero_allow_untested_optimizer", "zero_force_ds_cpu_optimizer"},
            {"optimizer", "scheduler", "activation_checkpointing", "amp", "flops_profiler", "comms_logger", "compile",
             "gradient_predivide_factor", "prescale_gradients", "sparse_gradients", "data_types", "elasticity",
             "pipeline", "autotuning", "tensorboard", "wandb", "csv_monitor"});
  // Permissions, not behaviour: "may ZeRO shard an optimizer DeepSpeed did not write" (shardlab's
  // engine shards its own optimizers) and "must offload use DeepSpeed's CPU Adam" (offload is
  // rejected at startup on the CPU). Either value is accepted; the type is checked.
  root.get_bool("zero_allow_untested_optimizer", false);
  root.get_bool("zero_force_ds_cpu_optimizer", false);
  root.get_int("steps_per_print", 10);
  root.get_bool("wall_clock_breakdown", false);

  if (auto fp16 = root.get("fp16")) {
    only_keys(*fp16, {"enabled", "auto_cast", "loss_scale", "initial_scale_power", "loss_scale_window", "hysteresis",
                      "consecutive_hysteresis", "min_loss_scale"},
              {"fp16_master_weights_and_grads"});
    merge_enabled(*fp16, c.fp16, explicit_keys.fp16, "fp16");
    if (auto ac = fp16->get("auto_cast"); ac && ac->as_bool()) ac->fail("true is not supported (shardlab casts the model)");
    LossScalerSettings& s = c.loss_scaler;
    s.loss_scale = fp16->get_double("loss_scale", s.loss_scale);
    s.initial_scale_power = fp16->get_int("initial_scale_power", s.initial_scale_power);
    s.loss_scale_window = fp16->get_int("loss_scale_window", s.loss_scale_window);
    s.hysteresis = fp16->get_int("hysteresis", s.hysteresis);
    s.consecutive_hysteresis = fp16->get_bool("consecutive_hysteresis", s.consecutive_hysteresis);
    s.min_loss_scale = fp16->get_double("min_loss_scale", s.min_loss_scale);
    if (s.loss_scale < 0) (*fp16)["loss_scale"].fail("must be 0 (dynamic) or a positive static scale");
    if (s.initial_scale_power < 0 || s.initial_scale_power > 64) (*fp16)["initial_scale_power"].fail("must be in [0, 64]");
    if (s.loss_scale_window < 1) (*fp16)["loss_scale_window"].fail("must be at least 1");
    if (s.hysteresis < 1) (*fp16)["hysteresis"].fail("must be at least 1");
    if (s.min_loss_scale <= 0) (*fp16)["min_loss_scale"].fail("must be positive");
  }
  if (auto bf16 = root.get("bf16")) {
    only_keys(*bf16, {"enabled"}, {"immediate_grad_update"});
    merge_enabled(*bf16, c.bf16, explicit_keys.bf16, "bf16");
  }
  if (c.fp16 == Toggle::on && c.bf16 == Toggle::on) root.fail("enables both fp16 and bf16 (with the YAML): pick one");

  merge_int(root, "gradient_accumulation_steps", c.gradient_accumulation_steps,
            explicit_keys.gradient_accumulation_steps, "gradient_accumulation_steps");
  merge_int(root, "train_micro_batch_size_per_gpu", c.micro_batch_size, explicit_keys.micro_batch_size,
            "micro_batch_size");
  if (auto clip = root.get("gradient_clipping"); clip && !is_auto(*clip)) {
    const double v = clip->as_double();
    if (v < 0) clip->fail("must be >= 0");
    if (explicit_keys.max_grad_norm && v != c.max_grad_norm)
      clip->fail("is " + json::dump(clip->value()) + " but the YAML's max_grad_norm is different");
    c.max_grad_norm = v;
  }
  if (auto tb = root.get("train_batch_size"); tb && !is_auto(*tb)) {
    // Checked against micro x accumulation x world size at startup, when the world size is known.
    if (tb->as_int() < 1) tb->fail("must be a positive integer or \"auto\"");
    c.distributed.train_batch_size = tb->as_int();
  }
  if (auto comm = root.get("communication_data_type"); comm && !comm->is_null()) {
    const std::string& t = comm->as_string();
    if (t != "fp32" && t != "fp16" && t != "bf16") comm->fail("must be \"fp32\", \"fp16\" or \"bf16\"");
    c.communication_data_type = t;
  }
  if (auto zero = root.get("zero_optimization")) parse_zero_optimization(*zero, c.distributed);
}

std::string_view to_string(DdpBackend v) {
  switch (v) {
    case DdpBackend::automatic: return "auto";
    case DdpBackend::nccl: return "nccl";
    case DdpBackend::mpi: return "mpi";
  }
  return "?";
}

std::string_view to_string(OffloadDevice v) {
  switch (v) {
    case OffloadDevice::none: return "none";
    case OffloadDevice::cpu: return "cpu";
    case OffloadDevice::nvme: return "nvme";
  }
  return "?";
}

DistributedSettings check_distributed_runtime(const TrainConfig& c, const RuntimeShape& shape) {
  SL_CHECK(shape.world_size >= 1, "check_distributed_runtime: world size ", shape.world_size);
  const std::string file = "deepspeed config '" + c.deepspeed + "': ";
  DistributedSettings d = c.distributed;
  if (d.train_batch_size) {
    const int64_t global = c.micro_batch_size * c.gradient_accumulation_steps * shape.world_size;
    SL_CHECK(*d.train_batch_size == global, file, "train_batch_size is ", *d.train_batch_size,
             " but train_micro_batch_size_per_gpu (micro_batch_size) ", c.micro_batch_size,
             " x gradient_accumulation_steps ", c.gradient_accumulation_steps, " x world size ", shape.world_size,
             " = ", global, "; make them agree or set train_batch_size to \"auto\"");
  }
  // ZeRO-3 is decided by the engine (dist::preset_from_zero_stage), which knows whether it has it.
  // Offload moves model state from a GPU to host memory: on a CPU run there is nothing to move, and
  // a silent no-op would misreport what the run does. On a GPU offload_optimizer: cpu steps the fp32
  // masters on the host, and offload_param: cpu (stage 3; parse_deepspeed checks the stage) keeps
  // the parameter and gradient shards there too; NVMe is not built.
  constexpr const char* kOffloadOnCpu = ": offload needs the model on a CUDA device; this run is on the CPU";
  const bool on_gpu = c.device == DeviceKind::cuda;
  SL_CHECK(on_gpu || d.offload_optimizer.device == OffloadDevice::none, file, "zero_optimization.offload_optimizer.device ",
           to_string(d.offload_optimizer.device), kOffloadOnCpu, " (remove offload_optimizer or set its device to \"none\")");
  SL_CHECK(d.offload_optimizer.device != OffloadDevice::nvme, file,
           "zero_optimization.offload_optimizer.device nvme is not supported (cpu is)");
  SL_CHECK(on_gpu || d.offload_param.device == OffloadDevice::none, file, "zero_optimization.offload_param.device ",
           to_string(d.offload_param.device), kOffloadOnCpu, " (remove offload_param or set its device to \"none\")");
  SL_CHECK(d.offload_param.device != OffloadDevice::nvme, file,
           "zero_optimization.offload_param.device nvme is not supported (cpu is)");
  if (c.fsdp.enabled) {
    SL_CHECK(!c.fsdp.offload_params || on_gpu, "fsdp_config.offload_params (or fsdp: [offload])", kOffloadOnCpu);
    SL_CHECK(!c.fsdp.offload_params || c.fsdp.sharding_strategy == FsdpShardingStrategy::full_shard ||
                 c.fsdp.sharding_strategy == FsdpShardingStrategy::hybrid_shard,
             "fsdp_config.offload_params with sharding_strategy ", to_string(c.fsdp.sharding_strategy),
             ": parameter offload needs FULL_SHARD or HYBRID_SHARD (the parameters must be sharded to live on the host)");
    if (c.fsdp.sharding_strategy == FsdpShardingStrategy::hybrid_shard) hybrid_shard_group_size(c.fsdp, shape.world_size);
    // Rank 0 alone reads the checkpoint and the engine's initial broadcast gives the others its
    // weights; frozen weights (LoRA/QLoRA base) are not broadcast, so every rank must read them.
    SL_CHECK(!c.fsdp.cpu_ram_efficient_loading || c.adapter.kind == AdapterKind::none,
             "fsdp_config.cpu_ram_efficient_loading with adapter ", to_string(c.adapter.kind),
             ": the frozen base weights are not broadcast, so every rank must read them; set it to false");
    SL_CHECK(!c.fsdp.cpu_ram_efficient_loading || c.fsdp.sync_module_states,
             "fsdp_config.cpu_ram_efficient_loading needs sync_module_states true (rank 0's weights are broadcast)");
  }
  SL_CHECK(!d.round_robin_gradients, file,
           "zero_optimization.round_robin_gradients orders gradient partitions for CPU offload, which needs the model "
           "on a CUDA device (this run is on the CPU); set it to false");
  // Knobs with a meaning that the engine does not implement: an error, never a silent change.
  SL_CHECK(d.reduce_scatter, file,
           "zero_optimization.reduce_scatter false (all-reduce, then keep the own shard) is not supported: shardlab's "
           "ZeRO reduce-scatters gradients; remove the key or set it to true");
  SL_CHECK(d.allgather_partitions, file,
           "zero_optimization.allgather_partitions false (one broadcast per rank) is not supported: updated shards are "
           "all-gathered; remove the key or set it to true");
  SL_CHECK(d.contiguous_gradients, file,
           "zero_optimization.contiguous_gradients false is not supported: gradients are always copied into contiguous "
           "bucket buffers; remove the key or set it to true");
  const bool needs_hidden =
      !d.reduce_bucket_size || !d.stage3_prefetch_bucket_size || !d.stage3_param_persistence_threshold;
  SL_CHECK(!needs_hidden || shape.hidden_size > 0, file, "\"auto\" bucket sizes need the model's hidden_size");
  const int64_t h = shape.hidden_size;
  if (!d.reduce_bucket_size) d.reduce_bucket_size = h * h;
  if (!d.stage3_prefetch_bucket_size) d.stage3_prefetch_bucket_size = static_cast<int64_t>(0.9 * static_cast<double>(h * h));
  if (!d.stage3_param_persistence_threshold) d.stage3_param_persistence_threshold = 10 * h;
  return d;
}

}  // namespace shardlab::config
