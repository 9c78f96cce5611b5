// The LlamaConfig a train config describes with `model_config:` (training from scratch).
#pragma once

#include "models/llama_config.h"
#include "tools/config/train_config.h"

namespace shardlab::cli {

// Unset fields take LlamaConfig's defaults; vocab_size defaults to the tokenizer's.
models::LlamaConfig llama_config_from(const config::ModelConfigFields& fields, int64_t tokenizer_vocab);

}  // namespace shardlab::cli
