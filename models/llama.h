// LlamaForCausalLM with Hugging Face's module tree and parameter names:
//   model.embed_tokens.weight, model.layers.N.{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj,
//   input_layernorm, post_attention_layernorm}.weight, model.norm.weight, lm_head.weight.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/llama_config.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/rms_norm.h"

namespace shardlab::models {

// Keys and values of every layer for the tokens seen so far, for incremental decoding.
struct KvCache {
  struct Layer {
    Tensor k, v;  // (B, Hkv, S, D) after RoPE; undefined before the first step
  };
  std::vector<Layer> layers;
  int64_t length = 0;  // S: tokens already in the cache
};

// Per-batch inputs besides the token ids.
struct LlamaInputs {
  Tensor input_ids;    // (B, T) i64
  Tensor positions;    // (B, T) or (T,) i64; undefined: 0..T-1
  Tensor segment_ids;  // (B, T) document ids for packed sequences; undefined: one document per row
  // With a cache, input_ids are the new tokens only (positions default to cache->length + 0..T-1);
  // their keys/values are appended and queries attend to everything cached (end-aligned causal).
  KvCache* cache = nullptr;
};

// Builds one decoder-layer projection: `name` is its dotted path in the model
// ("model.layers.3.self_attn.q_proj"), the module maps in_features -> out_features. Left empty, the
// model builds an nn::Linear initialised from its seed. QLoRA's loader (models/llama_quantize.h)
// passes one that reads that projection's weight from the checkpoint and quantizes it, so the
// full-precision projections never exist all at once.
using ProjectionFactory =
    std::function<std::shared_ptr<nn::UnaryModule>(const std::string& name, int64_t in_features, int64_t out_features)>;

class LlamaAttention : public nn::Module {
 public:
  // `prefix` is this module's dotted path, for make_projection's names.
  LlamaAttention(const LlamaConfig& config, uint64_t seed, const std::string& prefix = "",
                 const ProjectionFactory& make_projection = {});
  Tensor forward(const Tensor& x, const Tensor& positions, const Tensor& segment_ids,
                 KvCache::Layer* cache = nullptr);  // (B, T, C)

 private:
  const LlamaConfig config_;
  // q_proj, k_proj, v_proj, o_proj are children looked up at call time (LoRA/QLoRA replace them).
};

class LlamaMLP : public nn::UnaryModule {
 public:
  LlamaMLP(const LlamaConfig& config, uint64_t seed, const std::string& prefix = "",
           const ProjectionFactory& make_projection = {});
  Tensor forward(const Tensor& x) override;  // down(silu(gate(x)) * up(x))
  // gate_proj, up_proj, down_proj are children looked up at call time (LoRA/QLoRA replace them).
};

class LlamaDecoderLayer : public nn::Module {
 public:
  LlamaDecoderLayer(const LlamaConfig& config, uint64_t seed, const std::string& prefix = "",
                    const ProjectionFactory& make_projection = {});
  Tensor forward(const Tensor& x, const Tensor& positions, const Tensor& segment_ids,
                 KvCache::Layer* cache = nullptr);

 private:
  std::shared_ptr<LlamaAttention> self_attn_;
  std::shared_ptr<LlamaMLP> mlp_;
  std::shared_ptr<nn::RMSNorm> input_layernorm_, post_attention_layernorm_;
};

class LlamaModel : public nn::Module {
 public:
  LlamaModel(const LlamaConfig& config, uint64_t seed, const ProjectionFactory& make_projection = {});
  Tensor forward(const LlamaInputs& inputs);  // hidden states (B, T, C)
  nn::Embedding& embed_tokens() { return *embed_tokens_; }
  const std::vector<std::shared_ptr<LlamaDecoderLayer>>& layers() const { return layers_; }

  // Activation checkpointing per decoder layer: in training mode with grad enabled and no KV cache,
  // each layer keeps only its input (B, T, C) between forward and backward and is recomputed in
  // backward. Gradients are bit-identical to the plain run; one extra layer forward per layer.
  bool gradient_checkpointing = false;

 private:
  LlamaConfig config_;
  std::shared_ptr<nn::Embedding> embed_tokens_;
  std::vector<std::shared_ptr<LlamaDecoderLayer>> layers_;
  std::shared_ptr<nn::RMSNorm> norm_;
};

class LlamaForCausalLM : public nn::Module {
 public:
  // Weights initialised as Hugging Face does: N(0, initializer_range) for linears and embeddings,
  // ones for norms; `seed` makes them reproducible. make_projection, when set, builds the
  // decoder-layer projections instead (see ProjectionFactory).
  LlamaForCausalLM(const LlamaConfig& config, uint64_t seed, const ProjectionFactory& make_projection = {});
  const LlamaConfig& config() const { return config_; }
  Tensor logits(const LlamaInputs& inputs);  // (B, T, V)
  // Sum over target tokens of the next-token cross-entropy, with HF's shift: logits at t predict
  // labels at t+1; labels of -100 are ignored. Returns {sum, number of target tokens}.
  std::pair<Tensor, int64_t> loss_sum(const LlamaInputs& inputs, const Tensor& labels);
  LlamaModel& model() { return *model_; }
  void set_gradient_checkpointing(bool on) { model_->gradient_checkpointing = on; }

 private:
  LlamaConfig config_;
  std::shared_ptr<LlamaModel> model_;
  bool has_lm_head_ = false;  // false when tied to embed_tokens
};

}  // namespace shardlab::models
