// The Llama decoder: pre-norm attention and SwiGLU MLP blocks with residuals, RoPE on q and k,
// grouped-query attention, final RMSNorm and the LM head (optionally tied to the embedding).
#include "models/llama.h"

#include "autograd/checkpoint.h"
#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "nn/module_list.h"

namespace shardlab::models {

namespace {
// Seeds for the parameters of layer `layer`: distinct, fixed streams per projection.
uint64_t layer_seed(uint64_t seed, int64_t layer, int64_t slot) { return seed * 1000003ULL + layer * 16 + slot + 1; }

// Child `name` of the module at `prefix`: from the factory when there is one, else a seeded Linear.
std::shared_ptr<nn::UnaryModule> projection(const LlamaConfig& c, const ProjectionFactory& make, const std::string& prefix,
                                            const std::string& name, int64_t in, int64_t out, uint64_t seed) {
  if (make) {
    auto module = make(prefix.empty() ? name : prefix + "." + name, in, out);
    SL_CHECK(module != nullptr, "llama: the projection factory returned nothing for '", prefix, ".", name, "'");
    return module;
  }
  return std::make_shared<nn::Linear>(in, out, false, seed, c.torch_dtype, c.initializer_range);
}
}  // namespace

LlamaAttention::LlamaAttention(const LlamaConfig& c, uint64_t seed, const std::string& prefix,
                               const ProjectionFactory& make)
    : Module("LlamaAttention"), config_(c) {
  const int64_t d = c.resolved_head_dim();
  register_module("q_proj", projection(c, make, prefix, "q_proj", c.hidden_size, c.num_attention_heads * d, seed + 0));
  register_module("k_proj", projection(c, make, prefix, "k_proj", c.hidden_size, c.num_key_value_heads * d, seed + 1));
  register_module("v_proj", projection(c, make, prefix, "v_proj", c.hidden_size, c.num_key_value_heads * d, seed + 2));
  register_module("o_proj", projection(c, make, prefix, "o_proj", c.num_attention_heads * d, c.hidden_size, seed + 3));
}

Tensor LlamaAttention::forward(const Tensor& x, const Tensor& positions, const Tensor& segment_ids,
                               KvCache::Layer* cache) {
  const int64_t B = x.size(0), T = x.size(1), d = config_.resolved_head_dim();
  const int64_t hq = config_.num_attention_heads, hkv = config_.num_key_value_heads;
  // (B, T, H*D) -> (B, H, T, D)
  auto heads = [&](const Tensor& t, int64_t h) { return transpose(view(t, {B, T, h, d}), 1, 2); };
  Tensor q = rope(heads(unary_child("q_proj")(x), hq), positions, config_.rope());
  Tensor k = rope(heads(unary_child("k_proj")(x), hkv), positions, config_.rope());
  Tensor v = heads(unary_child("v_proj")(x), hkv);
  if (cache != nullptr) {
    if (cache->k.defined()) {
      k = cat({cache->k, k}, 2);
      v = cat({cache->v, v}, 2);
    }
    cache->k = contiguous(k);
    cache->v = contiguous(v);
  }
  AttentionOptions options;
  options.causal = true;
  options.segment_ids = segment_ids;
  Tensor a = attention(q, k, v, options);                    // (B, Hq, T, D)
  Tensor merged = reshape(transpose(a, 1, 2), {B, T, hq * d});  // (B, T, Hq*D)
  return unary_child("o_proj")(merged);
}

LlamaMLP::LlamaMLP(const LlamaConfig& c, uint64_t seed, const std::string& prefix, const ProjectionFactory& make)
    : UnaryModule("LlamaMLP") {
  register_module("gate_proj", projection(c, make, prefix, "gate_proj", c.hidden_size, c.intermediate_size, seed + 4));
  register_module("up_proj", projection(c, make, prefix, "up_proj", c.hidden_size, c.intermediate_size, seed + 5));
  register_module("down_proj", projection(c, make, prefix, "down_proj", c.intermediate_size, c.hidden_size, seed + 6));
}

Tensor LlamaMLP::forward(const Tensor& x) { return unary_child("down_proj")(swiglu(unary_child("gate_proj")(x), unary_child("up_proj")(x))); }

LlamaDecoderLayer::LlamaDecoderLayer(const LlamaConfig& c, uint64_t seed, const std::string& prefix,
                                     const ProjectionFactory& make)
    : Module("LlamaDecoderLayer") {
  self_attn_ = register_module("self_attn", std::make_shared<LlamaAttention>(c, seed, prefix + ".self_attn", make));
  mlp_ = register_module("mlp", std::make_shared<LlamaMLP>(c, seed, prefix + ".mlp", make));
  input_layernorm_ = register_module("input_layernorm", std::make_shared<nn::RMSNorm>(c.hidden_size, c.rms_norm_eps, c.torch_dtype));
  post_attention_layernorm_ =
      register_module("post_attention_layernorm", std::make_shared<nn::RMSNorm>(c.hidden_size, c.rms_norm_eps, c.torch_dtype));
}

Tensor LlamaDecoderLayer::forward(const Tensor& x, const Tensor& positions, const Tensor& segment_ids,
                                  KvCache::Layer* cache) {
  run_forward_pre_hooks();  // a sharding engine gathers this layer's parameters here
  Tensor h = x + self_attn_->forward((*input_layernorm_)(x), positions, segment_ids, cache);
  return run_forward_post_hooks(h + (*mlp_)((*post_attention_layernorm_)(h)));
}

LlamaModel::LlamaModel(const LlamaConfig& c, uint64_t seed, const ProjectionFactory& make)
    : Module("LlamaModel"), config_(c) {
  embed_tokens_ = register_module("embed_tokens", std::make_shared<nn::Embedding>(c.vocab_size, c.hidden_size, seed,
                                                                                  c.torch_dtype, c.initializer_range));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers_.push_back(
        std::make_shared<LlamaDecoderLayer>(c, layer_seed(seed, i, 0), "model.layers." + std::to_string(i), make));
  }
  auto list = std::make_shared<nn::ModuleList>();
  for (auto& layer : layers_) list->append(layer);
  register_module("layers", list);
  norm_ = register_module("norm", std::make_shared<nn::RMSNorm>(c.hidden_size, c.rms_norm_eps, c.torch_dtype));
}

Tensor LlamaModel::forward(const LlamaInputs& in) {
  SL_CHECK(in.input_ids.dim() == 2, "llama: input_ids must be (batch, seq), got ", shape_str(in.input_ids.shape()));
  const int64_t T = in.input_ids.size(1);
  const int64_t past = in.cache != nullptr ? in.cache->length : 0;
  SL_CHECK(past + T <= config_.max_position_embeddings, "llama: sequence length ", past + T,
           " exceeds max_position_embeddings ", config_.max_position_embeddings);
  SL_CHECK(in.cache == nullptr || !in.segment_ids.defined(), "llama: packed segments cannot use a KV cache");
  Tensor positions = in.positions.defined()
                         ? in.positions
                         : ops::add_scalar(Tensor::arange(T).to(in.input_ids.device()), static_cast<double>(past));
  if (in.cache != nullptr) in.cache->layers.resize(layers_.size());
  Tensor x = embed_tokens_->forward(in.input_ids);  // (B, T, C)
  // Checkpointing only pays off when a backward will follow; a cached decode step must also write
  // its keys/values exactly once, which a recomputation would repeat.
  const bool ckpt = gradient_checkpointing && is_training() && GradMode::enabled() && in.cache == nullptr;
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (ckpt) {
      // The layer (and through it its parameters), positions and segment ids are captured; only the
      // hidden state is a checkpoint input, so it alone is saved.
      auto region = [layer = layers_[i], positions, segments = in.segment_ids](const std::vector<Tensor>& h) {
        return std::vector<Tensor>{layer->forward(h[0], positions, segments)};
      };
      x = checkpoint(region, {x})[0];
    } else {
      x = layers_[i]->forward(x, positions, in.segment_ids, in.cache != nullptr ? &in.cache->layers[i] : nullptr);
    }
  }
  if (in.cache != nullptr) in.cache->length += T;
  return (*norm_)(x);
}

LlamaForCausalLM::LlamaForCausalLM(const LlamaConfig& c, uint64_t seed, const ProjectionFactory& make)
    : Module("LlamaForCausalLM"), config_(c) {
  c.validate();
  model_ = register_module("model", std::make_shared<LlamaModel>(c, seed, make));
  if (!c.tie_word_embeddings) {
    register_module("lm_head", std::make_shared<nn::Linear>(c.hidden_size, c.vocab_size, false, seed + 999983ULL,
                                                           c.torch_dtype, c.initializer_range));
    has_lm_head_ = true;
  }
}

Tensor LlamaForCausalLM::logits(const LlamaInputs& inputs) {
  run_forward_pre_hooks();  // a sharding engine gathers the root unit (embeddings, norm, lm_head) here
  Tensor h = model_->forward(inputs);
  if (has_lm_head_) return run_forward_post_hooks(unary_child("lm_head")(h));
  const Tensor& table = model_->embed_tokens().named_parameters()[0].second;  // (V, C)
  return run_forward_post_hooks(matmul(h, transpose(table, 0, 1)));
}

std::pair<Tensor, int64_t> LlamaForCausalLM::loss_sum(const LlamaInputs& inputs, const Tensor& labels) {
  Tensor lg = logits(inputs);  // (B, T, V)
  const int64_t B = lg.size(0), T = lg.size(1), V = lg.size(2);
  SL_CHECK(labels.shape() == (Shape{B, T}), "llama loss: labels of shape ", shape_str(labels.shape()),
           " for input_ids of shape ", shape_str(inputs.input_ids.shape()));
  // Position t predicts token t+1.
  Tensor pred = reshape(narrow(lg, 1, 0, T - 1), {B * (T - 1), V});
  Tensor target = ops::reshape(ops::narrow(labels, 1, 1, T - 1), {B * (T - 1)});
  int64_t count = 0;
  for (int64_t id : target.to_int_vector()) count += id != -100;
  return {cross_entropy(pred, target, -100, Reduction::sum), count};
}

}  // namespace shardlab::models
