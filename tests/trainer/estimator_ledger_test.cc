// The memory estimator (tools/estimator) against the memory ledger of a real training step on one
// rank: parameter, gradient, optimizer_state and activation peaks within 10% for f32, bf16+masters,
// checkpointing on/off, LoRA and QLoRA (the errors are printed, so drift shows before it fails).
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/tools/estimator_test_model.h"
#include "tools/cli/memory_measure.h"

namespace shardlab::cli {
namespace {


constexpr MemTag kMajor[] = {MemTag::parameter, MemTag::gradient, MemTag::optimizer_state, MemTag::activation};

void expect_within_10_percent(const MemoryVariant& v) {
  MemoryRunOptions o;
  o.micro_batch_size = 2;
  o.sequence_len = 64;
  o.seed = 5;
  const models::LlamaConfig model = estimate::estimator_test_model();
  const MemoryMeasurement m = measure_training_step(model, v, o);
  const estimate::MemoryEstimate e = estimate::estimate_memory(estimate_setup_of(model, v, o));
  std::printf("%-28s", v.name().c_str());
  for (MemTag t : kMajor)
    std::printf(" %s %+6.2f%% (%.0f / %ld)", mem_tag_name(t), 100 * estimate_error(e, m, t), e.of(t),
                static_cast<long>(m.peak_of(t)));
  std::printf("\n");
  for (MemTag t : kMajor)
    EXPECT_LE(std::abs(estimate_error(e, m, t)), 0.10)
        << v.name() << " " << mem_tag_name(t) << ": estimate " << e.of(t) << " bytes, measured " << m.peak_of(t);
}

TEST(EstimatorVsLedger, F32) { expect_within_10_percent({false, false, false}); }
TEST(EstimatorVsLedger, F32Checkpointing) { expect_within_10_percent({false, true, false}); }
TEST(EstimatorVsLedger, Bf16Masters) { expect_within_10_percent({true, false, false}); }
TEST(EstimatorVsLedger, Bf16MastersCheckpointing) { expect_within_10_percent({true, true, false}); }
TEST(EstimatorVsLedger, F32AdamW8bit) { expect_within_10_percent({false, false, true}); }
TEST(EstimatorVsLedger, F32Lora) { expect_within_10_percent({false, false, false, TrainedPart::lora}); }
TEST(EstimatorVsLedger, Bf16Lora) { expect_within_10_percent({true, false, false, TrainedPart::lora}); }
TEST(EstimatorVsLedger, F32LoraCheckpointing) { expect_within_10_percent({false, true, false, TrainedPart::lora}); }
TEST(EstimatorVsLedger, Bf16LoraCheckpointing) { expect_within_10_percent({true, true, false, TrainedPart::lora}); }
TEST(EstimatorVsLedger, F32Qlora) { expect_within_10_percent({false, false, false, TrainedPart::qlora}); }
TEST(EstimatorVsLedger, Bf16Qlora) { expect_within_10_percent({true, false, false, TrainedPart::qlora}); }

}  // namespace
}  // namespace shardlab::cli
