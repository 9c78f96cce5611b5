// LlamaConfig: the architecture of a Llama-family decoder, with Hugging Face config.json's field
// names and defaults.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/dtype.h"
#include "core/ops/fused.h"

namespace shardlab::models {

struct LlamaConfig {
  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  int64_t num_key_value_heads = 32;
  int64_t head_dim = 0;  // 0: hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<ops::RopeScaling> rope_scaling;  // rope_type "llama3"
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  double initializer_range = 0.02;
  DType torch_dtype = DType::f32;
  std::optional<int64_t> bos_token_id, eos_token_id, pad_token_id;

  int64_t resolved_head_dim() const { return head_dim > 0 ? head_dim : hidden_size / num_attention_heads; }
  ops::RopeConfig rope() const { return {rope_theta, rope_scaling}; }
  // Errors name the inconsistent fields (heads not dividing, GQA groups, ...).
  void validate() const;
  // Parameter count of the model this config describes.
  int64_t num_parameters() const;
};

}  // namespace shardlab::models
