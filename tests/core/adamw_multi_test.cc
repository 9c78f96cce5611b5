// ops::adamw_step_multi on the CPU: bit-identical to one adamw_step per tensor over mixed shapes and
// dtypes, and its argument errors (unequal lists, a bad entry, a tensor on another device).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/device_kernels.h"
#include "core/ops.h"

namespace shardlab::ops {
namespace {

using testing::HasSubstr;

DType state_dtype(DType param) { return param == DType::f64 ? DType::f64 : DType::f32; }

// One parameter with its gradient and AdamW moments (v >= 0, as a real second moment).
struct Entry {
  Tensor p, g, m, v;
};
Entry make_entry(const Shape& shape, DType dt, uint64_t seed) {
  return {Tensor::randn(shape, seed, dt), Tensor::randn(shape, seed + 1, dt),
          Tensor::randn(shape, seed + 2, state_dtype(dt), 0.0, 0.1),
          Tensor::rand(shape, seed + 3, state_dtype(dt), 0.0, 0.01)};
}
Entry clone_entry(const Entry& e) { return {clone(e.p), clone(e.g), clone(e.m), clone(e.v)}; }

struct Lists {
  std::vector<Tensor> p, g, m, v;
};
Lists lists_of(const std::vector<Entry>& entries) {
  Lists l;
  for (const Entry& e : entries) {
    l.p.push_back(e.p);
    l.g.push_back(e.g);
    l.m.push_back(e.m);
    l.v.push_back(e.v);
  }
  return l;
}

void expect_same_bytes(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  EXPECT_EQ(std::memcmp(got.raw_data(), want.raw_data(), static_cast<size_t>(got.nbytes())), 0)
      << what << " differs from the per-tensor adamw_step";
}

// Throws with a message holding every one of `parts`.
template <typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown (expected one mentioning '" << parts.front() << "')";
  } catch (const Error& e) {
    for (const std::string& part : parts) EXPECT_THAT(e.what(), HasSubstr(part));
  }
}

TEST(AdamWMulti, MatchesPerTensorStepsBitForBit) {
  // f32 around omp's 65536-element threshold, bf16 and f16 with f32 state, f64 with f64 state,
  // a scalar and an empty tensor, in one call.
  const std::vector<std::pair<Shape, DType>> specs = {
      {{3, 5}, DType::f32},   {{70001}, DType::f32}, {{17}, DType::bf16}, {{2, 3, 4}, DType::f16},
      {{9}, DType::f64},      {{}, DType::f32},      {{0}, DType::f32},   {{65, 33}, DType::bf16}};
  std::vector<Entry> single, multi;
  for (size_t i = 0; i < specs.size(); ++i) {
    single.push_back(make_entry(specs[i].first, specs[i].second, 10 * i + 1));
    multi.push_back(clone_entry(single.back()));
  }
  const Lists l = lists_of(multi);
  AdamWHyper h;
  h.lr = 3e-3;
  h.weight_decay = 0.05;
  for (int64_t step = 1; step <= 3; ++step) {
    h.step = step;
    h.lr *= 0.9;  // hyperparameters may change between steps
    for (const Entry& e : single) adamw_step(e.p, e.g, e.m, e.v, h);
    adamw_step_multi(l.p, l.g, l.m, l.v, h);
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string what = "#" + std::to_string(i) + " " + dtype_name(specs[i].second) + " " +
                             shape_str(specs[i].first);
    expect_same_bytes(multi[i].p, single[i].p, what + " param");
    expect_same_bytes(multi[i].m, single[i].m, what + " exp_avg");
    expect_same_bytes(multi[i].v, single[i].v, what + " exp_avg_sq");
  }
}

TEST(AdamWMulti, BumpsTheVersionsOfWhatItWrites) {
  const Entry e = make_entry({4}, DType::f32, 1);
  const uint64_t p0 = e.p.version(), g0 = e.g.version(), m0 = e.m.version(), v0 = e.v.version();
  adamw_step_multi({e.p}, {e.g}, {e.m}, {e.v}, AdamWHyper{});
  EXPECT_GT(e.p.version(), p0);
  EXPECT_GT(e.m.version(), m0);
  EXPECT_GT(e.v.version(), v0);
  EXPECT_EQ(e.g.version(), g0);  // the gradient is only read
}

TEST(AdamWMulti, EmptyListsDoNothing) { EXPECT_NO_THROW(adamw_step_multi({}, {}, {}, {}, AdamWHyper{})); }

TEST(AdamWMulti, UnequalListsNameTheOp) {
  const Entry e = make_entry({4}, DType::f32, 1);
  expect_error([&] { adamw_step_multi({e.p, e.p}, {e.g}, {e.m, e.m}, {e.v, e.v}, AdamWHyper{}); },
               {"adamw_step_multi", "2 parameters, 1 gradients", "equal lengths"});
  expect_error([&] { adamw_step_multi({}, {}, {}, {e.v}, AdamWHyper{}); }, {"adamw_step_multi", "equal lengths"});
}

TEST(AdamWMulti, BadEntryIsNamedAndNothingIsWritten) {
  const Entry a = make_entry({6}, DType::f32, 1), b = make_entry({5}, DType::bf16, 2);
  const Entry a0 = clone_entry(a);
  // b's second moment in bf16: adamw_step wants f32 state for a bf16 parameter.
  const Tensor bad_v = Tensor::zeros({5}, DType::bf16);
  expect_error([&] { adamw_step_multi({a.p, b.p}, {a.g, b.g}, {a.m, b.m}, {a.v, bad_v}, AdamWHyper{}); },
               {"adamw_step_multi (tensor 1)", "must be f32"});
  // Entry 0 came before the bad one but was not updated.
  expect_same_bytes(a.p, a0.p, "param 0 after a failed call");
  expect_same_bytes(a.m, a0.m, "exp_avg 0 after a failed call");
  // A gradient of the wrong size and an undefined moment.
  expect_error([&] { adamw_step_multi({a.p, b.p}, {a.g, a.g}, {a.m, b.m}, {a.v, b.v}, AdamWHyper{}); },
               {"adamw_step_multi (tensor 1)"});
  expect_error([&] { adamw_step_multi({a.p}, {a.g}, {Tensor()}, {a.v}, AdamWHyper{}); },
               {"adamw_step_multi (tensor 0)", "first moment", "undefined"});
  // An integer parameter and a step of 0.
  const Tensor ip = Tensor::zeros({6}, DType::i64);
  expect_error([&] { adamw_step_multi({a.p, ip}, {a.g, ip}, {a.m, a.m}, {a.v, a.v}, AdamWHyper{}); },
               {"adamw_step_multi (tensor 1)"});
  AdamWHyper h;
  h.step = 0;
  expect_error([&] { adamw_step_multi({a.p}, {a.g}, {a.m}, {a.v}, h); }, {"adamw_step_multi", "step must be >= 1"});
  expect_same_bytes(a.p, a0.p, "param 0 after the failed calls");
}

TEST(AdamWMulti, TensorOnAnotherDeviceIsRejected) {
  // A CUDA-labelled view of host memory: no backend is needed to label a tensor, only to run it.
  const Entry a = make_entry({8}, DType::f32, 1), b = make_entry({8}, DType::f32, 2);
  const Entry a0 = clone_entry(a);
  const Tensor foreign = Tensor::from_blob(b.g.raw_data(), b.g.shape(), b.g.dtype(), Device::cuda(0));
  expect_error([&] { adamw_step_multi({a.p, b.p}, {a.g, foreign}, {a.m, b.m}, {a.v, b.v}, AdamWHyper{}); },
               {"adamw_step_multi (tensor 1)", "gradient", "cuda:0", "one device"});
  expect_same_bytes(a.p, a0.p, "param 0 after a failed call");
  // A first parameter on the device dispatches there; with no backend registered that is an error
  // naming the op.
  ASSERT_EQ(registered_device_kernels(DeviceType::cuda), nullptr) << "test_core should run without a CUDA backend";
  const Tensor foreign_p = Tensor::from_blob(b.p.raw_data(), b.p.shape(), b.p.dtype(), Device::cuda(0));
  expect_error([&] { adamw_step_multi({foreign_p}, {b.g}, {b.m}, {b.v}, AdamWHyper{}); },
               {"adamw_step_multi", "no CUDA backend"});
}

}  // namespace
}  // namespace shardlab::ops
