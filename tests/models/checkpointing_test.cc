// Llama activation checkpointing per decoder layer: gradients bit-identical to the plain run, used
// only when training with grad and no KV cache, and the activation memory it saves (memory ledger).
#include <gtest/gtest.h>

#include <cstdio>

#include "autograd/engine.h"
#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/memory_ledger.h"
#include "models/llama.h"

namespace shardlab::models {
namespace {

LlamaConfig tiny4() {
  LlamaConfig c;
  c.vocab_size = 50;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.initializer_range = 0.2;  // large enough that every layer changes the result
  return c;
}

// Deterministic token ids in [0, vocab) from a small LCG.
Tensor token_ids(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed) {
  std::vector<int64_t> v(static_cast<size_t>(batch * seq));
  for (auto& id : v) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    id = static_cast<int64_t>((seed >> 33) % static_cast<uint64_t>(vocab));
  }
  return Tensor::from_ints(v, {batch, seq});
}

// Name of the node that produced the input of the final norm, i.e. of the last decoder layer's output.
std::string last_layer_node(LlamaForCausalLM& m, const LlamaInputs& in) {
  Tensor h = m.model().forward(in);  // norm(x): grad_fn is rms_norm, its first edge leads to x
  const AutogradMeta* meta = h.autograd_meta();
  if (meta == nullptr || !meta->grad_fn) return "<none>";
  return meta->grad_fn->next_edges.at(0).fn->name();
}

TEST(LlamaCheckpointing, GradientsAndLossAreBitIdenticalToThePlainRun) {
  const LlamaConfig c = tiny4();
  Tensor ids = token_ids(2, 12, c.vocab_size, 5);
  // Packed rows with explicit positions and segments, so the captured extras are exercised too.
  Tensor positions = Tensor::from_ints({0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3}, {2, 12});
  Tensor segments = Tensor::from_ints({0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1}, {2, 12});
  auto run = [&](bool ckpt) {
    auto m = std::make_shared<LlamaForCausalLM>(c, 11);
    m->set_gradient_checkpointing(ckpt);
    m->train();
    auto [loss, count] = m->loss_sum({ids, positions, segments}, ids);
    backward(loss);
    std::vector<std::vector<double>> grads;
    for (auto& [name, p] : m->named_parameters()) {
      EXPECT_TRUE(p.grad().defined()) << name << (ckpt ? " (checkpointed)" : " (plain)");
      grads.push_back(p.grad().defined() ? p.grad().to_double_vector() : std::vector<double>{});
    }
    return std::make_pair(loss.item(), grads);
  };
  auto [plain_loss, plain_grads] = run(false);
  auto [ckpt_loss, ckpt_grads] = run(true);
  EXPECT_EQ(ckpt_loss, plain_loss);  // bit-identical, not merely close
  ASSERT_EQ(ckpt_grads.size(), plain_grads.size());
  ASSERT_EQ(plain_grads.size(), 1u + 4 * 9 + 1 + 1);
  for (size_t i = 0; i < plain_grads.size(); ++i) EXPECT_EQ(ckpt_grads[i], plain_grads[i]) << "parameter " << i;
}

TEST(LlamaCheckpointing, UsedOnlyWhenTrainingWithGradAndNoCache) {
  LlamaForCausalLM m(tiny4(), 3);
  LlamaInputs in{token_ids(1, 6, 50, 1)};
  EXPECT_EQ(last_layer_node(m, in), "add");  // off by default
  m.set_gradient_checkpointing(true);
  EXPECT_TRUE(m.model().gradient_checkpointing);
  EXPECT_EQ(last_layer_node(m, in), "checkpoint");
  m.eval();
  EXPECT_EQ(last_layer_node(m, in), "add");
  m.train();
  KvCache cache;
  LlamaInputs cached{token_ids(1, 6, 50, 1), Tensor(), Tensor(), &cache};
  EXPECT_EQ(last_layer_node(m, cached), "add");
  EXPECT_EQ(cache.length, 6);  // the cache was filled once, by the plain path
  {
    NoGradGuard no_grad;
    EXPECT_EQ(last_layer_node(m, in), "<none>");
  }
  // Checkpointed and plain forward values agree exactly.
  std::vector<double> a = m.logits(in).to_double_vector();
  m.set_gradient_checkpointing(false);
  EXPECT_EQ(m.logits(in).to_double_vector(), a);
}

struct ActivationFigures {
  int64_t kept = 0;  // live activation bytes after forward, before backward
  int64_t peak = 0;  // activation peak over forward + backward
};

ActivationFigures measure(const LlamaConfig& c, bool ckpt, const Tensor& ids) {
  LlamaForCausalLM m(c, 7);
  m.set_gradient_checkpointing(ckpt);
  m.train();
  MemoryLedger& ledger = MemoryLedger::instance();
  const int64_t base = ledger.snapshot(Device::cpu())[MemTag::activation].live;
  ledger.reset_peaks();
  ActivationFigures f;
  {
    MemTagScope tag(MemTag::activation);  // as the trainer does
    Tensor loss = m.loss_sum({ids}, ids).first;
    f.kept = ledger.snapshot(Device::cpu())[MemTag::activation].live - base;
    backward(loss);
  }
  f.peak = ledger.snapshot(Device::cpu())[MemTag::activation].peak - base;
  return f;
}

TEST(LlamaCheckpointing, KeepsOnlyTheLayerInputsBetweenForwardAndBackward) {
  LlamaConfig c = tiny4();
  c.hidden_size = 64;
  c.intermediate_size = 128;
  const int64_t B = 2, T = 32, L = c.num_hidden_layers, C = c.hidden_size, I = c.intermediate_size;
  const int64_t H = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.resolved_head_dim(), V = c.vocab_size;
  Tensor ids = token_ids(B, T, V, 9);  // allocated outside the activation scope; labels = ids

  // What each op of a decoder layer saves for backward (f32 = 4 bytes; weights are parameters):
  //   input_layernorm  rstd (B,T)                        -> BT      (its x is the layer input)
  //   q/k/v_proj       the normed input n1 (B,T,C)       -> BTC     (one tensor shared by the three)
  //   rope(q), rope(k) nothing but positions; attention saves q_rot (B,H,T,D), k_rot (B,Hkv,T,D),
  //                    v (a view of v_proj's (B,T,Hkv*D) output), out (B,H,T,D), lse (B,H,T)
  //                                                      -> BT(2HD + 2HkvD + H)
  //   o_proj           merged heads, a copy (B,T,H*D)    -> BTHD
  //   residual add     nothing; its output h (B,T,C) is saved by post_attention_layernorm -> BTC
  //   post_attn norm   rstd (B,T) and output n2 (B,T,C) saved by gate/up_proj -> BT + BTC
  //   swiglu           gate and up (B,T,I); down_proj saves swiglu's output (B,T,I) -> 3BTI
  //   residual add     nothing; its output is the next layer's input.
  // So one layer keeps BT(2 + 3C + 3HD + 2HkvD + H + 3I) floats besides its input.
  const int64_t per_layer = 4 * B * T * (2 + 3 * C + 3 * H * D + 2 * Hkv * D + H + 3 * I);
  // Kept either way: the L + 1 hidden states (embedding output and each layer's output, i.e. the L
  // layer inputs plus the final norm's input), positions (T,) i64, final norm rstd (B,T) and output
  // (B,T,C) saved by lm_head, the shifted logits copied to (B(T-1), V) and the targets (B(T-1),) i64
  // saved by cross_entropy with its lse (B(T-1),), and the scalar loss.
  const int64_t chain = 4 * (L + 1) * B * T * C;
  const int64_t head = 8 * T + 4 * (B * T + B * T * C + B * (T - 1) * V + B * (T - 1) + 1) + 8 * B * (T - 1);
  const int64_t expected_plain = L * per_layer + chain + head;
  const int64_t expected_ckpt = chain + head;  // each checkpoint node holds only its layer's input

  const ActivationFigures plain = measure(c, false, ids);
  const ActivationFigures ckpt = measure(c, true, ids);
  std::printf("[llama checkpointing] B=%ld T=%ld C=%ld I=%ld L=%ld\n", static_cast<long>(B), static_cast<long>(T),
              static_cast<long>(C), static_cast<long>(I), static_cast<long>(L));
  std::printf("  kept after forward: plain %ld B (expected %ld), checkpointed %ld B (expected %ld), ratio %.2fx\n",
              static_cast<long>(plain.kept), static_cast<long>(expected_plain), static_cast<long>(ckpt.kept),
              static_cast<long>(expected_ckpt), static_cast<double>(plain.kept) / static_cast<double>(ckpt.kept));
  std::printf("  activation peak over forward+backward: plain %ld B, checkpointed %ld B, ratio %.2fx\n",
              static_cast<long>(plain.peak), static_cast<long>(ckpt.peak),
              static_cast<double>(plain.peak) / static_cast<double>(ckpt.peak));

  // Tolerance: 2% of the expected bytes, room for small bookkeeping tensors the analysis leaves out.
  const double tol = 0.02;
  EXPECT_NEAR(static_cast<double>(plain.kept), static_cast<double>(expected_plain), tol * expected_plain);
  EXPECT_NEAR(static_cast<double>(ckpt.kept), static_cast<double>(expected_ckpt), tol * expected_ckpt);
  const double expected_factor = static_cast<double>(expected_plain) / static_cast<double>(expected_ckpt);
  EXPECT_GE(static_cast<double>(plain.kept) / static_cast<double>(ckpt.kept), (1 - 2 * tol) * expected_factor);
  // The peak includes backward's transients; recomputing one layer at a time keeps it lower too.
  EXPECT_LT(ckpt.peak, plain.peak);
  // At the checkpointed peak at most about one layer's activations are alive besides what is kept.
  EXPECT_LT(ckpt.peak, plain.kept);
}

}  // namespace
}  // namespace shardlab::models
