// Merging a DeepSpeed JSON config into the train config.
#include "tools/config/deepspeed_config.h"

#include <cmath>
#include <filesystem>

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
                   "communication_data_type"},
            {"optimizer", "scheduler", "activation_checkpointing", "zero_allow_untested_optimizer", "amp",
             "flops_profiler", "comms_logger"});

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
    // One process for now: the global batch is micro batch x accumulation (ranks arrive later).
    const int64_t global = c.micro_batch_size * c.gradient_accumulation_steps;
    if (tb->as_int() != global)
      tb->fail("is " + std::to_string(tb->as_int()) + " but micro_batch_size x gradient_accumulation_steps is " +
               std::to_string(global));
  }
  if (auto comm = root.get("communication_data_type"); comm && !comm->is_null()) {
    const std::string& t = comm->as_string();
    if (t != "fp32" && t != "fp16" && t != "bf16") comm->fail("must be \"fp32\", \"fp16\" or \"bf16\"");
    c.communication_data_type = t;
  }
  if (auto zero = root.get("zero_optimization")) {
    const int64_t stage = zero->get_int("stage", 0);
    if (stage != 0) (*zero)["stage"].fail("is " + std::to_string(stage) + ": ZeRO stages 1-3 are not supported yet");
  }
}

}  // namespace shardlab::config
