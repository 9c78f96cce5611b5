// QLoRA's 4-bit base model: every decoder-layer projection (q, k, v, o, gate, up, down) becomes a
// frozen nn::Nf4Linear; embeddings, norms and lm_head stay full precision in the compute dtype.
#pragma once

#include <memory>
#include <string>

#include "models/llama.h"

namespace shardlab::models {

// The projection names QLoRA quantizes, relative to a decoder layer.
inline constexpr const char* kLlamaProjections[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                    "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                    "mlp.down_proj"};

// Quantizes a built model in place: each projection (which must still be an nn::Linear) is
// replaced through Module::replace_child by an Nf4Linear computing in compute_dtype, and every
// remaining parameter is cast to compute_dtype. The full-precision projection weights are freed as
// they are replaced (unless the caller holds them).
void quantize_llama_nf4(LlamaForCausalLM& model, DType compute_dtype);

// Loads a Hugging Face checkpoint straight into the 4-bit model: the projections are read from the
// safetensors file one tensor at a time and quantized as the model is built, so the ledger's peak
// while loading is the 4-bit model plus one full-precision projection (and the embeddings, norms and
// lm_head, which stay full precision anyway). Same checks as load_llama: every tensor present with
// the config's shape, nothing unexpected. `seed` only seeds the placeholder initialisation of the
// tensors the checkpoint then overwrites.
std::unique_ptr<LlamaForCausalLM> load_llama_nf4(const std::string& model_dir, DType compute_dtype, uint64_t seed = 0);

}  // namespace shardlab::models
