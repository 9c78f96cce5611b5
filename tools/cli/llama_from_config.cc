// model_config: fields -> LlamaConfig.
#include "tools/cli/llama_from_config.h"

namespace shardlab::cli {

models::LlamaConfig llama_config_from(const config::ModelConfigFields& f, int64_t tokenizer_vocab) {
  models::LlamaConfig c;
  c.vocab_size = f.vocab_size.value_or(tokenizer_vocab);
  c.hidden_size = *f.hidden_size;
  c.intermediate_size = *f.intermediate_size;
  c.num_hidden_layers = *f.num_hidden_layers;
  c.num_attention_heads = *f.num_attention_heads;
  c.num_key_value_heads = f.num_key_value_heads.value_or(c.num_attention_heads);
  c.max_position_embeddings = f.max_position_embeddings.value_or(c.max_position_embeddings);
  c.rope_theta = f.rope_theta.value_or(c.rope_theta);
  c.rms_norm_eps = f.rms_norm_eps.value_or(1e-5);
  c.tie_word_embeddings = f.tie_word_embeddings.value_or(false);
  return c;
}

}  // namespace shardlab::cli
