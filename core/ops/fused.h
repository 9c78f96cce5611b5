// The fused ops a Llama needs, each an explicit forward/backward kernel pair with the small state
// backward needs: RMSNorm, rotary embedding, SwiGLU, causal GQA attention, cross-entropy.
#pragma once

#include <optional>

#include "core/tensor.h"

namespace shardlab::ops {

// ---- RMSNorm over the last dim: y = x / sqrt(mean(x^2) + eps) * weight ----
struct RmsNormOut {
  Tensor y;     // x's shape and dtype
  Tensor rstd;  // (rows,) f32 (f64 for f64 input): 1 / sqrt(mean(x^2) + eps)
};
RmsNormOut rms_norm_fwd(const Tensor& x, const Tensor& weight, double eps);
struct RmsNormGrads {
  Tensor dx;
  Tensor dweight;
};
RmsNormGrads rms_norm_bwd(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd);

// ---- Rotary position embedding, Hugging Face's half-split (rotate_half) convention ----
struct RopeScaling {  // Llama-3 "rope_type": "llama3"
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};
struct RopeConfig {
  double theta = 10000.0;
  std::optional<RopeScaling> scaling;
};
// The inverse frequencies (head_dim / 2,) as f64, scaling applied.
std::vector<double> rope_inv_freq(const RopeConfig& config, int64_t head_dim);
// x (B, H, T, D); positions (T,) or (B, T) i32/i64. y = x*cos + rotate_half(x)*sin.
Tensor rope_fwd(const Tensor& x, const Tensor& positions, const RopeConfig& config);
// The transpose of the rotation (rotation by -angle).
Tensor rope_bwd(const Tensor& dy, const Tensor& positions, const RopeConfig& config);

// ---- SwiGLU: out = silu(gate) * up ----
Tensor swiglu_fwd(const Tensor& gate, const Tensor& up);
struct SwigluGrads {
  Tensor dgate;
  Tensor dup;
};
SwigluGrads swiglu_bwd(const Tensor& dout, const Tensor& gate, const Tensor& up);

// ---- Scaled dot-product attention, blockwise with an online softmax ----
// q (B, Hq, T, D); k, v (B, Hkv, S, D) with Hq a multiple of Hkv (grouped-query heads).
// No (T, S) matrix is kept: backward recomputes scores block by block from q, k and lse.
struct AttentionOptions {
  bool causal = true;
  std::optional<double> scale;  // default 1/sqrt(D)
  // (B, T) i32/i64 document ids for packed sequences: a query attends only to keys of its own
  // document (requires T == S). Undefined means one document per row.
  Tensor segment_ids;
};
struct AttentionOut {
  Tensor out;  // (B, Hq, T, D), q's dtype
  Tensor lse;  // (B, Hq, T) f32 (f64 for f64 inputs): log-sum-exp of each row's scaled scores
};
AttentionOut attention_fwd(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options);
struct AttentionGrads {
  Tensor dq, dk, dv;
};
AttentionGrads attention_bwd(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& out, const Tensor& lse, const AttentionOptions& options);

// ---- Cross-entropy over the last dim of logits (N, V) against targets (N,) i32/i64 ----
enum class Reduction { mean, sum, none };
struct CrossEntropyOut {
  Tensor loss;   // scalar for mean/sum, (N,) for none; f32 (f64 for f64 logits)
  Tensor lse;    // (N,) log-sum-exp per row, same dtype as loss
  int64_t count = 0;  // targets that are not ignore_index
};
CrossEntropyOut cross_entropy_fwd(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                  Reduction reduction);
// dlogits = (softmax(logits) - onehot(target)) * dloss (/ count for mean); ignored rows get 0.
// Computed from logits and lse: no probability matrix is saved.
Tensor cross_entropy_bwd(const Tensor& dloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                         int64_t ignore_index, Reduction reduction, int64_t count);

}  // namespace shardlab::ops
