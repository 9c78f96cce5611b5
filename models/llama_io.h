// Hugging Face checkpoints for Llama: config.json <-> LlamaConfig, and model.safetensors (single
// file or sharded with model.safetensors.index.json) <-> the model's parameters.
#pragma once

#include <memory>
#include <string>

#include "core/json.h"
#include "models/llama.h"

namespace shardlab::models {

// Reads the fields shardlab uses from a HF config.json; other HF keys (architectures, ...) are
// ignored, but a field with the wrong type, an unsupported rope_scaling type or a model_type
// other than "llama" is an error naming the file and key.
LlamaConfig llama_config_from_json(const json::Value& config, const std::string& source);
LlamaConfig load_llama_config(const std::string& model_dir);
json::Value llama_config_to_json(const LlamaConfig& config);

// Copies weights from `model_dir` into `model` (converting dtypes). Every parameter must be
// present with the right shape; a tensor the model does not have is an error, except the
// rotary inv_freq buffers old checkpoints carry and lm_head.weight when embeddings are tied.
void load_llama_weights(LlamaForCausalLM& model, const std::string& model_dir);
std::unique_ptr<LlamaForCausalLM> load_llama(const std::string& model_dir, uint64_t seed = 0);

// Writes config.json and model.safetensors into `model_dir` (created if missing), each file
// written to a temporary name and renamed, with tensors stored as `dtype`. With max_shard_bytes
// > 0 and more bytes than that, writes Hugging Face's sharded layout instead:
// model-0000K-of-0000N.safetensors files (tensors in parameter order, a new shard when the next
// tensor would pass the limit) and model.safetensors.index.json, written last.
void save_llama(const LlamaForCausalLM& model, const std::string& model_dir, DType dtype = DType::f32,
                int64_t max_shard_bytes = 0);

}  // namespace shardlab::models
