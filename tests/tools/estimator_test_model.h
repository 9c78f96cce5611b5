// The model the estimator-against-ledger tests measure (one rank in tests/trainer, per rank under
// mpirun in tests/distributed/estimator_ranks): small, yet with activations above per-tensor rounding.
#pragma once

#include "models/llama_config.h"

namespace shardlab::estimate {

// Hidden 64, 2 layers; with batch 2 x 64 a step runs in well under a second, and the activation
// terms (B*T*H, B*T*V) dominate per-tensor rounding.
inline models::LlamaConfig estimator_test_model() {
  models::LlamaConfig c;
  c.vocab_size = 200;  // V*H (the embedding gradient) below 2*B*T*H (two checkpointed input gradients)
  c.hidden_size = 64;
  c.intermediate_size = 172;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  return c;
}

}  // namespace shardlab::estimate
