// The memory estimator (tools/estimator) per rank under mpirun: each rank's memory-ledger peaks of a
// real training step through the data-parallel engine (make_data_parallel + the Trainer) against
// the estimate for that preset and world size, within 10% per major tag (parameter, gradient,
// optimizer_state, activation), f32 and bf16 with fp32 masters; the errors are printed by rank 0.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "distributed/data_parallel_setup.h"
#include "tests/distributed/mpi_ranks/mpi_test_world.h"
#include "tests/tools/estimator_test_model.h"
#include "tools/estimator/memory_estimate.h"
#include "tools/trainer/trainer.h"

namespace shardlab::dist::testing {
namespace {

constexpr int64_t kBatch = 2, kSeq = 64;

// Random token ids, different per rank (labels = inputs; the model shifts them).
class RankTokens final : public train::BatchStream {
 public:
  RankTokens(int64_t vocab, int rank) : rng_(1000 + rank), pick_(0, vocab - 1) {}
  train::MicroBatch next() override {
    std::vector<int64_t> ids(kBatch * kSeq);
    for (int64_t& id : ids) id = pick_(rng_);
    Tensor t = Tensor::from_ints(ids, {kBatch, kSeq});
    return {{t, Tensor(), Tensor()}, t, kBatch * (kSeq - 1)};
  }
  json::Value state() const override { return json::Value(); }
  void restore(const json::Value&) override {}

 private:
  std::mt19937_64 rng_;
  std::uniform_int_distribution<int64_t> pick_;
};

struct Case {
  Preset preset;
  bool bf16;
  bool checkpointing = false;
};

// This rank's ledger peaks per tag over the second (steady-state) step, from the live bytes before
// anything was built.
std::array<int64_t, kNumMemTags> measure(ProcessGroup& group, const Case& c, const estimate::EstimateSetup& setup) {
  MemoryLedger& ledger = MemoryLedger::instance();
  const DeviceMemory before = ledger.snapshot(Device::cpu());
  DeviceMemory after;
  {
    models::LlamaForCausalLM model(estimate::estimator_test_model(), 7);
    if (c.bf16) model.to(DType::bf16);
    model.set_gradient_checkpointing(c.checkpointing);
    DataParallelOptions o;
    o.preset = c.preset;
    o.reduce_bucket_size = o.allgather_bucket_size = setup.resolved_bucket_elements();
    o.prefetch_bucket_size = 1;  // one unit ahead, as the estimate's prefetch_depth 1
    const nn::PrecisionPolicy precision = nn::make_precision_policy(c.bf16, false);
    DataParallelSetup dp = make_data_parallel(model, group, o, precision, [](std::vector<Tensor> p) {
      return std::make_unique<nn::AdamW>(std::move(p), 1e-3);
    });
    RankTokens data(estimate::estimator_test_model().vocab_size, group.rank());
    train::TrainerOptions to;
    to.max_steps = 2;
    to.max_grad_norm = 1.0;
    to.schedule = {nn::LrScheduleKind::constant, 1e-3, 0, 2};
    to.print_progress = false;
    train::Trainer trainer(model, *dp.optimizer, data, to, std::function<double()>{},
                           train::MixedPrecision{nullptr, dp.scaler.get()}, dp.engine.get());
    trainer.step();
    ledger.reset_peaks();
    trainer.step();
    after = ledger.snapshot(Device::cpu());
  }
  std::array<int64_t, kNumMemTags> peak{};
  for (int t = 0; t < kNumMemTags; ++t) peak[t] = after.tags[t].peak - before.tags[t].live;
  return peak;
}

void check(ProcessGroup& group, const Case& c) {
  estimate::EstimateSetup s;
  s.model = estimate::estimator_test_model();
  s.precision = c.bf16 ? estimate::Precision::bf16_masters : estimate::Precision::f32;
  s.gradient_checkpointing = c.checkpointing;
  s.micro_batch_size = kBatch;
  s.sequence_len = kSeq;
  s.preset = c.preset;
  s.world_size = group.size();
  const estimate::MemoryEstimate e = estimate::estimate_memory(s);
  const std::array<int64_t, kNumMemTags> peak = measure(group, c, s);
  const std::string what = std::string(preset_name(c.preset)) + " N=" + std::to_string(group.size()) +
                           (c.bf16 ? " bf16+masters" : " f32") + (c.checkpointing ? " ckpt" : "") + " rank " +
                           std::to_string(group.rank());
  std::string line = what;
  for (MemTag t : {MemTag::parameter, MemTag::gradient, MemTag::optimizer_state, MemTag::activation}) {
    const double m = static_cast<double>(peak[static_cast<int>(t)]), err = (e.of(t) - m) / m;
    char buf[128];
    std::snprintf(buf, sizeof buf, "  %s %+6.2f%% (%.0f / %.0f)", mem_tag_name(t), 100 * err, e.of(t), m);
    line += buf;
    EXPECT_LE(std::abs(err), 0.10) << what << " " << mem_tag_name(t) << ": estimate " << e.of(t) << " bytes, measured " << m;
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

TEST(EstimatorRanks, DataParallelPresetsWithinTenPercentPerRank) {
  for (Preset p : {Preset::ddp, Preset::zero1, Preset::zero2})
    for (bool bf16 : {false, true}) check(world(), {p, bf16});
  check(world(), {Preset::zero2, false, true});
}

TEST(EstimatorRanks, ShardedParameterPresetsWithinTenPercentPerRank) {
  for (Preset p : {Preset::zero3, Preset::hybrid_shard})
    for (bool bf16 : {false, true}) check(world(), {p, bf16});
}

}  // namespace
}  // namespace shardlab::dist::testing
