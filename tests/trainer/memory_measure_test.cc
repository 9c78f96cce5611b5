// `shardlab memory`'s measurement: the ledger's bytes after one real step match the arithmetic of
// each variant exactly (from the parameter count P and the 8-bit block count), and gradient
// checkpointing lowers the activation peak.
#include <gtest/gtest.h>

#include "tools/cli/memory_measure.h"
#include "tools/trainer/trainer.h"

namespace shardlab::cli {
namespace {

models::LlamaConfig small() {
  models::LlamaConfig c;
  c.vocab_size = 40;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  return c;
}

// The parameters' element counts, written out from the Llama architecture (untied lm_head).
std::vector<int64_t> param_sizes(const models::LlamaConfig& c) {
  const int64_t C = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t kv = C / c.num_attention_heads * c.num_key_value_heads;
  std::vector<int64_t> n = {V * C};  // embed_tokens
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    for (int64_t x : {C * C, kv * C, kv * C, C * C, I * C, I * C, C * I, C, C}) n.push_back(x);
  n.push_back(C);      // final norm
  n.push_back(V * C);  // lm_head
  return n;
}

int64_t total(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}
// bitsandbytes-style blocks of 256 elements, one per started block of each parameter.
int64_t blocks(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += (x + 255) / 256;
  return s;
}

class MemoryMeasure : public ::testing::Test {
 protected:
  static MemoryMeasurement run(bool bf16, bool ckpt, bool q8) {
    MemoryRunOptions o;
    o.micro_batch_size = 2;
    o.sequence_len = 32;
    o.seed = 3;
    return measure_training_step(small(), {bf16, ckpt, q8}, o);
  }
  const std::vector<int64_t> sizes = param_sizes(small());
  const int64_t P = total(sizes);
  const int64_t B = blocks(sizes);
};

// There are no scalar tensors in the state (the step count is a plain integer), so the bytes are exact.
TEST_F(MemoryMeasure, F32AdamWIsFourFourEightBytesPerParameter) {
  const MemoryMeasurement m = run(false, false, false);
  ASSERT_EQ(m.num_parameters, P);
  EXPECT_EQ(m.live_of(MemTag::parameter), 4 * P);
  EXPECT_EQ(m.live_of(MemTag::gradient), 4 * P);
  EXPECT_EQ(m.live_of(MemTag::optimizer_state), 8 * P);  // exp_avg + exp_avg_sq in f32
  EXPECT_EQ(m.live_of(MemTag::activation), 0);            // freed once backward is done
  EXPECT_GT(m.peak_of(MemTag::activation), 0);
  EXPECT_GE(m.total_peak, m.total_live);
}

TEST_F(MemoryMeasure, Bf16MastersAddFourBytesOfMastersToTheOptimizerState) {
  const MemoryMeasurement m = run(true, false, false);
  ASSERT_EQ(m.num_parameters, P);
  EXPECT_EQ(m.live_of(MemTag::parameter), 2 * P);
  // Only the f32 master gradients (4P) outlive the step: the bf16 ones are dropped once copied.
  EXPECT_EQ(m.live_of(MemTag::gradient), 4 * P);
  EXPECT_EQ(m.live_of(MemTag::optimizer_state), 4 * P + 8 * P);
}

TEST_F(MemoryMeasure, EightBitAdamWIsTwoBytesPerParameterPlusTwoAbsmaxPerBlock) {
  const MemoryMeasurement f = run(false, false, true);
  EXPECT_EQ(f.live_of(MemTag::parameter), 4 * P);
  EXPECT_EQ(f.live_of(MemTag::gradient), 4 * P);
  EXPECT_EQ(f.live_of(MemTag::optimizer_state), 2 * P + 8 * B);  // u8 m, v codes + f32 absmax of each
  const MemoryMeasurement h = run(true, false, true);
  EXPECT_EQ(h.live_of(MemTag::parameter), 2 * P);
  EXPECT_EQ(h.live_of(MemTag::optimizer_state), 4 * P + 2 * P + 8 * B);  // masters + 8-bit state
}

TEST_F(MemoryMeasure, CheckpointingLowersTheActivationPeakOnly) {
  for (bool bf16 : {false, true}) {
    const MemoryMeasurement plain = run(bf16, false, false), ckpt = run(bf16, true, false);
    EXPECT_LT(ckpt.peak_of(MemTag::activation), plain.peak_of(MemTag::activation)) << "bf16 " << bf16;
    for (MemTag t : {MemTag::parameter, MemTag::gradient, MemTag::optimizer_state})
      EXPECT_EQ(ckpt.live_of(t), plain.live_of(t)) << mem_tag_name(t);
  }
}

TEST_F(MemoryMeasure, NothingOutlivesTheMeasurement) {
  const int64_t before = MemoryLedger::instance().snapshot(Device::cpu()).live;
  run(true, true, true);
  EXPECT_EQ(MemoryLedger::instance().snapshot(Device::cpu()).live, before);
  EXPECT_EQ(all_memory_variants().size(), 8u);
  const std::string table = memory_table({run(false, false, false)});
  EXPECT_NE(table.find("optimizer_state"), std::string::npos);
  EXPECT_NE(table.find("total peak"), std::string::npos);
}

}  // namespace
}  // namespace shardlab::cli
