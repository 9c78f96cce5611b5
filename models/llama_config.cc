// LlamaConfig checks and sizes.
#include "models/llama_config.h"

#include "core/error.h"

namespace shardlab::models {

void LlamaConfig::validate() const {
  auto positive = [](int64_t v, const char* name) { SL_CHECK(v > 0, "llama config: ", name, " must be positive, got ", v); };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_key_value_heads, "num_key_value_heads");
  positive(max_position_embeddings, "max_position_embeddings");
  SL_CHECK(num_attention_heads % num_key_value_heads == 0, "llama config: num_attention_heads (", num_attention_heads,
           ") must be a multiple of num_key_value_heads (", num_key_value_heads, ")");
  SL_CHECK(head_dim > 0 || hidden_size % num_attention_heads == 0, "llama config: hidden_size (", hidden_size,
           ") is not divisible by num_attention_heads (", num_attention_heads, ") and head_dim is not set");
  SL_CHECK(resolved_head_dim() % 2 == 0, "llama config: head_dim (", resolved_head_dim(),
           ") must be even for rotary embeddings");
  SL_CHECK(rms_norm_eps > 0, "llama config: rms_norm_eps must be positive");
}

int64_t LlamaConfig::num_parameters() const {
  const int64_t d = resolved_head_dim();
  const int64_t attn = hidden_size * num_attention_heads * d * 2 + hidden_size * num_key_value_heads * d * 2;
  const int64_t mlp = 3 * hidden_size * intermediate_size;
  const int64_t layer = attn + mlp + 2 * hidden_size;
  const int64_t embed = vocab_size * hidden_size;
  return embed + num_hidden_layers * layer + hidden_size + (tie_word_embeddings ? 0 : embed);
}

}  // namespace shardlab::models
