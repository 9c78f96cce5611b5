// NOTE [saved tensors per decoder layer]: per token, in the compute dtype (s bytes) unless marked f32:
//   x      H      the layer input (input_layernorm's rms_norm saves x; its rstd is 1 f32)
//   n1     H      input_layernorm's output, saved once by the q/k/v matmuls (shared tensor)
//   q_rope Hq*d   RoPE output, saved by attention (rope itself saves only the positions)
//   k_rope Hkv*d  idem;  v  Hkv*d: v_proj's output, saved by attention through its view
//   out    Hq*d   attention output, plus lse Hq f32 (no T x T matrix: backward recomputes scores)
//   merged Hq*d   transpose+reshape of out is a copy, saved by o_proj's matmul
//   h      H      x + attention (post_attention_layernorm saves it; rstd 1 f32)
//   n2     H      saved by the gate/up matmuls
//   gate, up 2I   saved by swiglu;  act I: swiglu's output, saved by down_proj's matmul
//   LoRA: r per adapted projection (A(x), saved by lora_B's matmul; x is already counted)
// Matmuls against weights save the weight (a parameter), residual adds save nothing.
#include "tools/estimator/activation_estimate.h"

#include <algorithm>

namespace shardlab::estimate {

namespace {

// Adapted projections per layer among q, k, v, o, gate, up, down.
int adapted_projections(const EstimateSetup& s) {
  if (s.adapter == AdapterKind::none) return 0;
  if (s.lora_targets.empty()) return 7;
  int n = 0;
  for (const char* p : {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
    n += static_cast<int>(std::count(s.lora_targets.begin(), s.lora_targets.end(), p));
  return n;
}

}  // namespace

ActivationEstimate estimate_activations(const EstimateSetup& setup) {
  const models::LlamaConfig& c = setup.model;
  const double s = compute_bytes(setup.precision), f32 = 4.0;
  const double B = static_cast<double>(setup.micro_batch_size), T = static_cast<double>(setup.sequence_len);
  const double BT = B * T, H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const double L = c.num_hidden_layers, d = c.resolved_head_dim();
  const double q = c.num_attention_heads * d, kv = c.num_key_value_heads * d, heads = c.num_attention_heads;
  const double r = adapted_projections(setup) * static_cast<double>(setup.lora_r);
  ActivationEstimate a;
  auto term = [&](const std::string& name, double bytes, const std::string& formula) {
    a.terms.push_back({name, bytes, formula});
    return bytes;
  };

  const double x_in = BT * H * s;
  a.saved_per_layer = term("per layer saved", BT * ((4 * H + 3 * q + 2 * kv + 3 * I + r) * s + (2 + heads) * f32),
                           "BT*((4H + 3q + 2kv + 3I + r_lora)*s + (2 + Hq)*4): x, n1, h, n2; q_rope, out, merged; "
                           "k_rope, v; gate, up, act; A(x) per adapter; 2 rstd + lse in f32");
  // Position t predicts t+1: the (B, T-1, V) logits are copied out of the (B, T, V) logits and saved by
  // cross-entropy (with its lse); the final norm saves x_L (+ rstd), lm_head its input; embedding and
  // cross-entropy save the token ids and targets (i64). With adapters the embedding, lm_head and norms
  // are frozen: the embedding records nothing (no ids) and lm_head's matmul, needing no weight
  // gradient, saves only its weight (autograd/matmul.cc, embedding.cc).
  const bool frozen_base = setup.adapter != AdapterKind::none;
  a.saved_head = frozen_base
                     ? term("head saved", BT * (H * s + f32 + 8) + B * (T - 1) * (V + 1) * s,
                            "BT*(H*s + 4 + 8) + B(T-1)(V+1)*s: x_L, rstd, targets; shifted logits + lse (frozen "
                            "embedding and lm_head save no ids and no lm_head input)")
                     : term("head saved", BT * (2 * H * s + f32 + 16) + B * (T - 1) * (V + 1) * s,
                            "BT*(2H*s + 4 + 16) + B(T-1)(V+1)*s: x_L, final norm output, rstd, ids, targets; shifted "
                            "logits + lse");
  // With a frozen embedding the first layer's input needs no gradient, so its input_layernorm (frozen
  // weight too) records nothing: x and rstd of layer 0 are not saved.
  const double unsaved_first_input = frozen_base ? term("layer 0 input not saved", BT * (H * s + f32),
                                                        "BT*(H*s + 4): frozen embedding -> rms_norm records nothing")
                                                 : 0.0;
  // Backward transients over the saved set:
  //   head: the full (B, T, V) logits next to the shifted copy (forward), or dlogits next to it (backward)
  //   layer: in the last layer's swiglu backward, dy (H) + d_gate and d_up (2I) are live while
  //          d_act has replaced act; the head's saves are gone by then.
  const double head_transient = term("head transient", BT * V * s, "BT*V*s: full logits (or their gradient)");
  const double layer_transient = term("layer transient", BT * (H + 2 * I) * s, "BT*(H + 2I)*s: dy, d_gate, d_up");
  if (!setup.gradient_checkpointing) {
    a.saved_total = L * a.saved_per_layer - unsaved_first_input + a.saved_head;
    a.peak = std::max(a.saved_total + head_transient, a.saved_total - a.saved_head + layer_transient);
    term("peak", a.peak, "max(L*layer (- layer 0 input) + head + head transient, L*layer + layer transient)");
  } else {
    // Checkpointing saves each layer's input only; backward recomputes one layer at a time, while the
    // outer engine holds the gradient reaching that layer's output (one more BT*H).
    a.saved_total = L * x_in + a.saved_head;
    const double recompute = (a.saved_per_layer - x_in) + layer_transient + x_in;
    a.peak = std::max(a.saved_total + head_transient, L * x_in + recompute);
    term("peak (checkpointing)", a.peak,
         "max(L*BTH*s + head + head transient, L*BTH*s + one layer's saves + layer transient + BTH*s)");
  }
  // Attention backward's workspace: f32 runs copy the non-contiguous v and dout; 16-bit runs convert
  // q, k, v, out, dout and lse to f32 and accumulate dk, dv in f32. Per-thread block scratch ignored.
  const double per_token = setup.precision == Precision::f32 ? (kv + q) : (3 * q + 4 * kv + heads);
  a.workspace_peak = term("workspace", BT * per_token * f32,
                          setup.precision == Precision::f32 ? "BT*(kv + q)*4: v and dout copies in attention backward"
                                                            : "BT*(3q + 4kv + Hq)*4: f32 copies in attention backward");
  return a;
}

}  // namespace shardlab::estimate
