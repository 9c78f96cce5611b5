// PEFT adapter files: adapter_config.json <-> LoraSettings, adapter_model.safetensors <-> the
// lora_A/lora_B tensors of a model's LoraLinear modules.
#include "models/peft_adapter.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "autograd/grad_mode.h"
#include "core/atomic_file.h"
#include "core/ops.h"
#include "core/safetensors.h"

namespace shardlab::models {

namespace fs = std::filesystem;

namespace {

constexpr const char* kConfigFile = "adapter_config.json";
constexpr const char* kWeightsFile = "adapter_model.safetensors";
// PeftModelForCausalLM holds the transformers model as base_model.model.
constexpr const char* kPeftPrefix = "base_model.model.";

std::string leaf(const std::string& path) {
  const auto dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

// Checks an optional key that must hold PEFT's "off" value (null, false, "none", {}, []).
void require_off(const json::Ref& cfg, const char* key, const char* why) {
  const std::optional<json::Ref> v = cfg.get(key);
  if (!v || v->is_null()) return;
  const json::Value& value = v->value();
  const bool off = (value.is_bool() && !value.as_bool()) || ((value.is_object() || value.is_array()) && value.size() == 0);
  if (!off) v->fail(std::string("is set, but ") + why);
}

// The adapter tensors of `model` by PEFT name.
std::map<std::string, Tensor> adapter_tensors(nn::Module& model) {
  std::map<std::string, Tensor> out;
  for (auto& [path, lora] : nn::lora_modules(model))
    for (auto& [name, t] : lora->named_parameters())
      if (name.starts_with("lora_A.") || name.starts_with("lora_B.")) out.emplace(peft_tensor_name(path, name), t);
  return out;
}

}  // namespace

std::string peft_tensor_name(const std::string& module_path, const std::string& tensor) {
  return kPeftPrefix + module_path + "." + tensor;
}

json::Value peft_config_json(const nn::LoraSettings& s, const std::string& base_model_name_or_path) {
  // PEFT 0.10's keys in its (alphabetical) order, every one at the value that means "plain LoRA".
  json::Value v = json::Value::object();
  v.set("alpha_pattern", json::Value::object());
  v.set("auto_mapping", nullptr);
  v.set("base_model_name_or_path", base_model_name_or_path.empty() ? json::Value() : json::Value(base_model_name_or_path));
  v.set("bias", "none");
  v.set("fan_in_fan_out", false);
  v.set("inference_mode", true);
  v.set("init_lora_weights", true);
  v.set("layer_replication", nullptr);
  v.set("layers_pattern", nullptr);
  v.set("layers_to_transform", nullptr);
  v.set("loftq_config", json::Value::object());
  // alpha is written as an integer when it is one, as PEFT configs usually carry it.
  v.set("lora_alpha", s.alpha == static_cast<double>(static_cast<int64_t>(s.alpha)) ? json::Value(static_cast<int64_t>(s.alpha))
                                                                                     : json::Value(s.alpha));
  v.set("lora_dropout", s.dropout);
  v.set("megatron_config", nullptr);
  v.set("megatron_core", "megatron.core");
  v.set("modules_to_save", nullptr);
  v.set("peft_type", "LORA");
  v.set("r", s.r);
  v.set("rank_pattern", json::Value::object());
  v.set("revision", nullptr);
  json::Value targets = json::Value::array();
  for (const std::string& t : s.target_modules) targets.push_back(t);
  v.set("target_modules", targets);
  v.set("task_type", "CAUSAL_LM");
  v.set("use_dora", false);
  v.set("use_rslora", false);
  return v;
}

nn::LoraSettings read_peft_config(const std::string& adapter_dir, uint64_t seed) {
  const std::string path = (fs::path(adapter_dir) / kConfigFile).string();
  SL_CHECK(fs::exists(path), "adapter directory '", adapter_dir, "' has no ", kConfigFile);
  const json::Value root = json::parse_file(path);
  const json::Ref cfg(root, path);
  SL_CHECK(root.is_object(), path, ": expected a JSON object");
  if (const std::string type = cfg.get_string("peft_type", ""); type != "LORA")
    cfg["peft_type"].fail("must be \"LORA\", got \"" + type + "\" (only LoRA adapters are supported)");
  if (const std::string task = cfg.get_string("task_type", "CAUSAL_LM"); task != "CAUSAL_LM")
    cfg["task_type"].fail("must be \"CAUSAL_LM\", got \"" + task + "\"");
  if (const std::string bias = cfg.get_string("bias", "none"); bias != "none")
    cfg["bias"].fail("must be \"none\", got \"" + bias + "\" (trained biases are not supported)");
  require_off(cfg, "fan_in_fan_out", "only (out, in) weights as in Llama are supported");
  require_off(cfg, "use_dora", "DoRA is not supported");
  require_off(cfg, "use_rslora", "rsLoRA's alpha / sqrt(r) scaling is not supported");
  require_off(cfg, "modules_to_save", "fully trained extra modules are not supported");
  require_off(cfg, "rank_pattern", "per-module ranks are not supported");
  require_off(cfg, "alpha_pattern", "per-module alphas are not supported");
  require_off(cfg, "layers_to_transform", "adapting a subset of layers is not supported");
  require_off(cfg, "layer_replication", "layer replication is not supported");

  nn::LoraSettings s;
  s.seed = seed;
  s.r = cfg["r"].as_int();
  if (s.r < 1) cfg["r"].fail("must be >= 1, got " + std::to_string(s.r));
  s.alpha = cfg.get_double("lora_alpha", 8.0);  // PEFT's default
  s.dropout = cfg.get_double("lora_dropout", 0.0);
  if (!(s.dropout >= 0.0 && s.dropout < 1.0)) cfg["lora_dropout"].fail("must be in [0, 1)");
  const json::Ref targets = cfg["target_modules"];
  if (targets.type() == json::Type::string) {
    // A string is a regex to PEFT; its one non-regex value is the all-linear shorthand.
    if (targets.as_string() != "all-linear")
      targets.fail("is the regex \"" + targets.as_string() + "\"; only a list of module names or \"all-linear\" is supported");
    s.target_linear = true;
  } else {
    for (size_t i = 0; i < targets.size(); ++i) s.target_modules.push_back(targets[i].as_string());
    if (s.target_modules.empty()) targets.fail("is empty: the adapter adapts nothing");
  }
  return s;
}

void save_peft_adapter(nn::Module& model, const nn::LoraSettings& settings, const std::string& dir,
                       const std::string& base_model_name_or_path) {
  const auto modules = nn::lora_modules(model);
  SL_CHECK(!modules.empty(), "save_peft_adapter: the model has no LoRA layers to save");
  nn::LoraSettings written = settings;
  if (settings.target_linear) {
    // As PEFT's all-linear: the config names what was wrapped, so that loading wraps the same.
    std::set<std::string> names(settings.target_modules.begin(), settings.target_modules.end());
    for (auto& [path, lora] : modules) names.insert(leaf(path));
    written.target_modules.assign(names.begin(), names.end());
    written.target_linear = false;
  }
  fs::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [name, t] : adapter_tensors(model)) tensors.emplace_back(name, t);
  save_safetensors((fs::path(dir) / kWeightsFile).string(), tensors, {{"format", "pt"}});
  write_file_atomic((fs::path(dir) / kConfigFile).string(),
                    json::dump_pretty(peft_config_json(written, base_model_name_or_path)) + "\n");
}

std::vector<std::string> load_peft_adapter(nn::Module& model, const std::string& dir, uint64_t seed) {
  const nn::LoraSettings settings = read_peft_config(dir, seed);
  std::vector<std::string> wrapped;
  try {
    wrapped = nn::apply_lora(model, settings);
  } catch (const Error& e) {
    SL_FAIL((fs::path(dir) / kConfigFile).string(), ": ", e.what());
  }
  load_peft_adapter_weights(model, dir);
  return wrapped;
}

void load_peft_adapter_weights(nn::Module& model, const std::string& dir) {
  const std::string path = (fs::path(dir) / kWeightsFile).string();
  SL_CHECK(fs::exists(path), "adapter directory '", dir, "' has no ", kWeightsFile);
  const SafetensorsFile file = SafetensorsFile::open(path);
  std::map<std::string, Tensor> mine = adapter_tensors(model);
  SL_CHECK(!mine.empty(), path, ": the model has no LoRA layers to load the adapter into");
  for (const std::string& name : file.names())
    SL_CHECK(mine.contains(name), path, ": unexpected tensor '", name, "' (the model has no such LoRA tensor)");
  NoGradGuard no_grad;
  for (auto& [name, t] : mine) {
    SL_CHECK(file.contains(name), path, ": missing tensor '", name, "'");
    const SafetensorsTensorInfo& info = file.info(name);
    SL_CHECK(info.shape == t.shape(), path, ": tensor '", name, "' has shape ", shape_str(info.shape),
             " but the model's is ", shape_str(t.shape()));
    SL_CHECK(is_floating(info.dtype), path, ": tensor '", name, "' has dtype ", info.file_dtype,
             "; expected a floating dtype");
    ops::copy_(t, file.get(name));
  }
}

}  // namespace shardlab::models
