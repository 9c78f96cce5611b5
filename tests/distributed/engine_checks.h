// The engine's checks, written once against a ProcessGroup so that the same bodies run with world
// size 1 (engine_test.cc, LocalProcessGroup) and with 2 and 4 ranks under mpirun (engine_ranks/).
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <limits>

#include "core/memory_ledger.h"
#include "core/ops.h"
#include "distributed/comm_ledger.h"
#include "tests/distributed/engine_harness.h"

namespace shardlab::dist::testing {

// NOTE [engine parity tolerance]: f32 throughout and the same start; only the order of additions
// differs (each rank's partial sum of its micro batches, then the collective's sum over ranks,
// versus one accumulation over all micro batches; the clip norm from per-bucket or per-shard sums
// of squares). That is a few ulps per gradient (~1e-7 relative), and AdamW turns it into a
// parameter difference of at most a few ulps of lr per step: 3 steps at lr 1e-2 stay below 1e-6,
// while a real bug (a missing rank, an average instead of a sum, a wrong shard) moves parameters
// by O(lr) = 1e-2.
inline constexpr double kF32ParameterTolerance = 1e-6;
// bf16 over N > 1 ranks: the per-rank bf16 gradient sums are added in f32 and rounded once by
// the collective, while the reference rounds after every micro batch: gradients differ by ~2^-8
// relative. Element-wise that is unbounded in AdamW's terms (a gradient near zero can change sign,
// moving its parameter by 2 lr), so bf16 is held to the whole update instead: the L2 norm of the
// difference from the reference stays below 5% of the L2 norm of what training moved; a missing
// rank or a wrong normalisation gives O(100%).
inline constexpr double kBf16RelativeTolerance = 0.05;

inline double l2_difference(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
  double s = 0;
  for (size_t t = 0; t < a.size(); ++t)
    for (size_t i = 0; i < a[t].size(); ++i) s += (a[t][i] - b[t][i]) * (a[t][i] - b[t][i]);
  return std::sqrt(s);
}

inline void check_parity(ProcessGroup& group, RunConfig c, int steps = 3) {
  EngineRun run(group, c);
  std::vector<double> losses, reference_losses;
  for (int s = 0; s < steps; ++s) losses.push_back(run.step(s).loss);
  const auto reference = reference_parameters(group.size(), c, steps, &reference_losses);
  const auto start = reference_parameters(group.size(), c, 0);
  const double diff = max_abs_difference(run.parameters(), reference);
  const double relative = l2_difference(run.parameters(), reference) / l2_difference(reference, start);
  if (c.dtype == DType::f32) EXPECT_LE(diff, kF32ParameterTolerance);
  else EXPECT_LE(relative, kBf16RelativeTolerance);
  // bf16: the losses see parameters an ulp apart (see kBf16ParameterTolerance).
  const double loss_tolerance = c.dtype == DType::f32 ? 1e-6 : 1e-2;
  for (int s = 0; s < steps; ++s)
    EXPECT_NEAR(losses[s], reference_losses[s], loss_tolerance * std::abs(reference_losses[s])) << "step " << s;
  // It trained: parameters moved far beyond the f32 tolerance.
  EXPECT_GT(max_abs_difference(run.parameters(), start), 1e-3);
  if (group.rank() == 0)
    std::printf("parity %s %s%s %s, %d ranks, %d steps: max |param - reference| = %.3g, |diff| / |update| = %.3g\n",
                preset_name(c.preset), dtype_name(c.dtype), c.reduce_dtype ? " (reduce f32)" : "",
                optimizer_name(c.optimizer), group.size(), steps, diff, relative);
}

inline int64_t padding_numel(const DataParallelEngine& e) {
  int64_t pad = 0;
  for (const BucketLayout& b : e.buckets()) pad += b.padded_numel - b.numel;
  return pad;
}

// Per-rank model state against the ZeRO paper. Measured twice: the engine's own accounting and the
// memory ledger's live bytes per tag (deltas from before the model existed); both must agree, and
// exceed the theory by at most what padding adds (the only deviation: each bucket is rounded up to
// a multiple of the world size, < world_size elements per bucket).
inline void check_model_state(ProcessGroup& group, Preset preset, DType dtype) {
  RunConfig c;
  c.preset = preset;
  c.dtype = dtype;
  const DeviceMemory before = MemoryLedger::instance().snapshot(Device::cpu());
  EngineRun run(group, c);
  run.step(0);  // AdamW creates its state at the first step
  ModelStateBytes measured, ledger;
  run.step(1, {.after_backward = {}, .after_reduction = [&] {
                 measured = run.engine().model_state_bytes(run.optimizer());
                 const DeviceMemory now = MemoryLedger::instance().snapshot(Device::cpu());
                 auto delta = [&](MemTag t) { return static_cast<double>(now[t].live - before[t].live); };
                 ledger = {delta(MemTag::parameter), delta(MemTag::gradient), delta(MemTag::optimizer_state)};
               }});
  const ModelStateBytes theory = run.engine().model_state_theory(OptimizerStateKind::adamw);
  EXPECT_EQ(run.engine().trained_numel(), 891);
  // The ledger also holds the MLP's frozen layer (built but unused here): it is not model state.
  const Tensor frozen = run.model().frozen.named_parameters()[0].second;
  EXPECT_EQ(ledger.parameters - static_cast<double>(frozen.nbytes()), measured.parameters);
  EXPECT_EQ(ledger.gradients, measured.gradients);
  EXPECT_EQ(ledger.optimizer_state, measured.optimizer_state);
  const double per_element = dtype_bytes(dtype, 1) * 2 + optimizer_bytes_per_param(OptimizerStateKind::adamw, dtype != DType::f32);
  const double slack = static_cast<double>(padding_numel(run.engine())) * per_element;
  EXPECT_GE(measured.total(), theory.total());
  EXPECT_LE(measured.total(), theory.total() + slack);
  EXPECT_GE(measured.gradients, theory.gradients);
  EXPECT_LE(measured.gradients, theory.gradients + slack);
  EXPECT_GE(measured.optimizer_state, theory.optimizer_state);
  EXPECT_LE(measured.optimizer_state, theory.optimizer_state + slack);
  // The paper's closed forms for psi = 891 (bf16 + AdamW: 16, 4 + 12/N, 2 + 14/N bytes per parameter).
  const double n = group.size(), psi = 891;
  const double bytes_per_param = dtype == DType::f32
      ? (preset == Preset::ddp ? 16 : preset == Preset::zero1 ? 8 + 8 / n : 4 + 12 / n)
      : (preset == Preset::ddp ? 16 : preset == Preset::zero1 ? 4 + 12 / n : 2 + 14 / n);
  EXPECT_DOUBLE_EQ(theory.total(), bytes_per_param * psi);
  if (group.rank() == 0)
    std::printf("model state %s %s, %d ranks (psi %d, padding %ld):\n%s", preset_name(preset), dtype_name(dtype),
                group.size(), 891, static_cast<long>(padding_numel(run.engine())),
                model_state_table(measured, theory).c_str());
}

// Collectives of gradient traffic, in elements: an all-reduce counts twice (reduce-scatter +
// all-gather), as in the paper. Scalars (token counts, loss, flags, norms) travel as f64.
inline double traffic_elements(const CommLedger& ledger, DType reduce_dtype, DType param_dtype, int64_t scalar_bytes) {
  const CollectiveStats ar = ledger.stats(CollectiveKind::all_reduce);
  const CollectiveStats rs = ledger.stats(CollectiveKind::reduce_scatter);
  const CollectiveStats ag = ledger.stats(CollectiveKind::all_gather);
  return 2.0 * static_cast<double>(ar.payload_bytes - scalar_bytes) / dtype_bytes(reduce_dtype, 1) +
         static_cast<double>(rs.payload_bytes) / dtype_bytes(reduce_dtype, 1) +
         static_cast<double>(ag.payload_bytes) / dtype_bytes(param_dtype, 1);
}

// One step's traffic is 2 psi (+ padding), none of it on the non-final micro batch, and the
// first collectives are issued while backward still runs.
inline void check_comm_ledger(ProcessGroup& group, Preset preset, DType dtype) {
  RunConfig c;
  c.preset = preset;
  c.dtype = dtype;
  c.accumulation = 3;
  EngineRun run(group, c);
  CommLedger& ledger = group.ledger();
  ledger.reset();
  std::vector<int64_t> calls_after_backward;
  run.step(0, {.after_backward = [&](int) { calls_after_backward.push_back(ledger.total().calls); },
               .after_reduction = {}});
  const int64_t n = group.size();
  // Scalars: token count and loss (+ overflow flag, + the ZeRO norm) as one f64 each, when n > 1.
  const int64_t scalars = n == 1 ? 0 : (preset == Preset::ddp ? 3 : 4);
  EXPECT_EQ(ledger.stats(CollectiveKind::all_reduce).calls,
            scalars + (preset == Preset::ddp ? static_cast<int64_t>(run.engine().buckets().size()) : 0));
  // Non-final micro batches: no collective at all.
  EXPECT_EQ(calls_after_backward[0], calls_after_backward[1]);
  EXPECT_EQ(calls_after_backward[0], n == 1 ? 0 : 1);  // only the token count
  const double psi = static_cast<double>(run.engine().trained_numel());
  const double pad = static_cast<double>(padding_numel(run.engine()));
  const double elements = traffic_elements(ledger, run.engine().reduce_dtype(), dtype, scalars * 8);
  EXPECT_GE(elements, zero_step_traffic_elements(preset, 891));
  EXPECT_LE(elements, zero_step_traffic_elements(preset, 891) + 2 * pad);
  if (n > 1) {  // ring wire bytes, converted to elements: 2 psi (N-1)/N
    const CollectiveStats t = ledger.total();
    const double wire = static_cast<double>(t.wire_bytes) / dtype_bytes(dtype, 1);
    const double theory = ring_wire_elements(2 * psi, static_cast<int>(n));
    EXPECT_GE(wire, theory);
    EXPECT_LE(wire, theory + 2 * pad + 2.0 * scalars * 8 / dtype_bytes(dtype, 1));
  }
  if (group.rank() == 0)
    std::printf("traffic %s %s, %ld ranks: %.0f elements per step (theory 2 psi = %.0f, padding %.0f)\n%s",
                preset_name(preset), dtype_name(dtype), static_cast<long>(n), elements, 2 * psi, pad,
                ledger.table().c_str());
}

// With several buckets the first one's collective is issued before backward has finished; with
// overlap_comm false none is.
inline void check_overlap(ProcessGroup& group, bool overlap) {
  RunConfig c;
  c.record_events = true;
  c.overlap_comm = overlap;
  c.accumulation = 1;
  EngineRun run(group, c);
  ASSERT_GE(run.engine().buckets().size(), 3u);
  // The events are recorded as they happen: a hook's grad_ready, then the group call's return for
  // bucket_issued. (The ledger cannot tell this: an MPI group records a collective on completion.)
  run.step(0);
  const std::vector<EngineEvent>& ev = run.engine().events();
  size_t first_issue = ev.size(), last_ready = 0;
  for (size_t i = 0; i < ev.size(); ++i) {
    if (ev[i].kind == EngineEvent::bucket_issued && first_issue == ev.size()) first_issue = i;
    if (ev[i].kind == EngineEvent::grad_ready) last_ready = i;
  }
  ASSERT_LT(first_issue, ev.size());
  EXPECT_EQ(ev[first_issue].index, 0);  // buckets go out in order
  if (overlap) EXPECT_LT(first_issue, last_ready);
  else EXPECT_GT(first_issue, last_ready);
  int issued = 0;
  for (const EngineEvent& e : ev) issued += e.kind == EngineEvent::bucket_issued;
  EXPECT_EQ(issued, static_cast<int>(run.engine().buckets().size()));
}

// Frozen parameters are not bucketed, reduced, sharded or stepped: they keep their storage and
// values, get no gradient and no optimizer state, and the run still matches the reference.
inline void check_frozen(ProcessGroup& group, Preset preset) {
  RunConfig c;
  c.preset = preset;
  c.frozen_layer = true;
  EngineRun run(group, c);
  const Tensor frozen = run.model().frozen.named_parameters()[0].second;
  const std::vector<double> frozen_before = frozen.to_double_vector();
  const void* frozen_data = frozen.raw_data();
  EXPECT_EQ(run.engine().trained_numel(), 891);
  for (int s = 0; s < 2; ++s) run.step(s);
  EXPECT_EQ(frozen.to_double_vector(), frozen_before);
  EXPECT_EQ(frozen.raw_data(), frozen_data);
  EXPECT_FALSE(frozen.grad().defined());
  int64_t stepped = 0;
  for (const Tensor& t : run.engine().optimizer_params()) stepped += t.numel();
  int64_t expected = 0;
  for (const BucketLayout& b : run.engine().buckets())
    expected += ShardingPlan::of(preset).shard_optimizer_state ? b.shard_numel : b.padded_numel;
  EXPECT_EQ(stepped, expected);
  EXPECT_LT(stepped, 891 + 576);
  EXPECT_LE(max_abs_difference(run.parameters(), reference_parameters(group.size(), c, 2)), kF32ParameterTolerance);
}

// fp16: an inf in one rank's gradient (the last rank's) makes every rank skip the step together
// and leaves every parameter as it was.
inline void check_overflow_skips_everywhere(ProcessGroup& group, Preset preset) {
  RunConfig c;
  c.preset = preset;
  c.dtype = DType::f16;
  EngineRun run(group, c);
  const auto before = run.parameters();
  const bool culprit = group.rank() == group.size() - 1;
  const StepResult r = run.step(0, {.after_backward = [&](int micro) {
                                      if (!culprit || micro != 0) return;
                                      Tensor g = run.model().l2.named_parameters()[0].second.grad();
                                      ops::fill_(ops::narrow(ops::reshape(g, {-1}), 0, 5, 1),
                                                 std::numeric_limits<double>::infinity());
                                    },
                                    .after_reduction = {}});
  EXPECT_TRUE(r.skipped) << "rank " << group.rank();
  EXPECT_EQ(run.parameters(), before);
  EXPECT_FALSE(run.step(1).skipped);  // the next step is clean again on every rank
  EXPECT_NE(run.parameters(), before);
}

// Recording the engine's events (and reading or resetting the communication ledger) only
// observes: the same collectives run and the parameters come out bit-identical.
inline void check_observers_change_nothing(ProcessGroup& group, Preset preset) {
  auto run_with = [&](bool observe) {
    RunConfig c;
    c.preset = preset;
    c.record_events = observe;
    EngineRun run(group, c);
    group.ledger().reset();
    std::vector<int64_t> calls;
    for (int s = 0; s < 2; ++s)
      run.step(s, {.after_backward = [&](int) {
                     if (observe) calls.push_back(group.ledger().total().calls);
                   },
                   .after_reduction = {}});
    const CollectiveStats t = group.ledger().total();
    return std::make_tuple(run.parameters(), t.calls, t.payload_bytes);
  };
  EXPECT_EQ(run_with(true), run_with(false));
}

}  // namespace shardlab::dist::testing
