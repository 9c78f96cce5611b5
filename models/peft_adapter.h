// Hugging Face PEFT LoRA adapters on disk: adapter_config.json + adapter_model.safetensors, with
// PEFT's tensor names ("base_model.model.<module path>.lora_A.weight"), so adapters move between
// shardlab and PEFT/transformers in both directions.
#pragma once

#include <string>
#include <vector>

#include "core/json.h"
#include "nn/lora.h"

namespace shardlab::models {

// PEFT's file name of a LoRA tensor of the module at `module_path` ("model.layers.0.self_attn.q_proj")
// and `tensor` ("lora_A.weight").
std::string peft_tensor_name(const std::string& module_path, const std::string& tensor);

// adapter_config.json as PEFT writes it (peft_type LORA, task_type CAUSAL_LM, r, lora_alpha,
// lora_dropout, target_modules, bias "none", fan_in_fan_out false, ...).
json::Value peft_config_json(const nn::LoraSettings& settings, const std::string& base_model_name_or_path);

// Reads adapter_config.json from `adapter_dir`. What shardlab cannot reproduce exactly is an error
// naming the file and key: a peft_type other than LORA, bias other than "none", fan_in_fan_out,
// DoRA, rsLoRA, modules_to_save, rank/alpha patterns, layers_to_transform, and a regex
// target_modules (the string "all-linear" reads as target_linear). `seed` goes into the settings.
nn::LoraSettings read_peft_config(const std::string& adapter_dir, uint64_t seed = 0);

// Writes the LoRA tensors of `model` (its LoraLinear modules) and `settings` into `dir` (created
// if missing), each file atomically, the config last. With target_linear the config lists the
// names of the wrapped modules, as PEFT's "all-linear" does.
void save_peft_adapter(nn::Module& model, const nn::LoraSettings& settings, const std::string& dir,
                       const std::string& base_model_name_or_path = {});

// Applies LoRA to `model` as `dir`'s adapter_config.json says, then loads the tensors (strictly,
// see load_peft_adapter_weights). Returns the wrapped module paths.
std::vector<std::string> load_peft_adapter(nn::Module& model, const std::string& dir, uint64_t seed = 0);

// Copies `dir`'s adapter_model.safetensors into the LoRA layers `model` already has (resuming a
// run). Strict: a LoRA tensor the file lacks, a tensor of the file the model has no place for,
// and a shape mismatch are errors naming the tensor.
void load_peft_adapter_weights(nn::Module& model, const std::string& dir);

}  // namespace shardlab::models
