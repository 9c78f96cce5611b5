// attention_fwd / attention_bwd against a naive float64 reference written here: the full
// softmax(Q K^T * scale + mask) V with its explicit backward, plus masking, packing, dtype,
// memory and bad-input checks.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "core/memory_ledger.h"
#include "core/ops.h"
#include "tests/tolerances.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;
using testing::tolerance;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

struct Dims {
  int64_t B, Hq, Hkv, T, S, D;
};

struct RefOut {
  std::vector<double> out, lse, dq, dk, dv;
};

// The full (T, S) reference in f64. Inputs are row-major (B, H, T|S, D) values.
RefOut reference(const Dims& d, const std::vector<double>& q, const std::vector<double>& k,
                 const std::vector<double>& v, const std::vector<double>& dout, bool causal, double scale,
                 const std::vector<int64_t>& seg) {
  RefOut r;
  r.out.assign(d.B * d.Hq * d.T * d.D, 0.0);
  r.lse.assign(d.B * d.Hq * d.T, kNegInf);
  r.dq.assign(q.size(), 0.0);
  r.dk.assign(k.size(), 0.0);
  r.dv.assign(v.size(), 0.0);
  const int64_t group = d.Hq / d.Hkv;
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t h = 0; h < d.Hq; ++h) {
      const int64_t qh = (b * d.Hq + h) * d.T * d.D, kh = (b * d.Hkv + h / group) * d.S * d.D;
      for (int64_t i = 0; i < d.T; ++i) {
        std::vector<double> s(d.S, kNegInf), p(d.S, 0.0);
        double mx = kNegInf;
        for (int64_t j = 0; j < d.S; ++j) {
          bool vis = !causal || j <= i + d.S - d.T;
          if (!seg.empty()) vis = vis && seg[b * d.T + i] == seg[b * d.T + j];
          if (!vis) continue;
          double dot = 0;
          for (int64_t c = 0; c < d.D; ++c) dot += q[qh + i * d.D + c] * k[kh + j * d.D + c];
          s[j] = dot * scale;
          mx = std::max(mx, s[j]);
        }
        if (mx == kNegInf) continue;  // no visible key: out 0, lse -inf, no gradient
        double sum = 0;
        for (int64_t j = 0; j < d.S; ++j) sum += s[j] == kNegInf ? 0.0 : std::exp(s[j] - mx);
        r.lse[(b * d.Hq + h) * d.T + i] = mx + std::log(sum);
        for (int64_t j = 0; j < d.S; ++j) p[j] = s[j] == kNegInf ? 0.0 : std::exp(s[j] - mx) / sum;
        for (int64_t c = 0; c < d.D; ++c)
          for (int64_t j = 0; j < d.S; ++j) r.out[qh + i * d.D + c] += p[j] * v[kh + j * d.D + c];
        if (dout.empty()) continue;
        // dP_j = dO . v_j; dS_j = P_j (dP_j - sum_l P_l dP_l)
        std::vector<double> dp(d.S, 0.0);
        double pdp = 0;
        for (int64_t j = 0; j < d.S; ++j) {
          for (int64_t c = 0; c < d.D; ++c) dp[j] += dout[qh + i * d.D + c] * v[kh + j * d.D + c];
          pdp += p[j] * dp[j];
        }
        for (int64_t j = 0; j < d.S; ++j) {
          const double ds = p[j] * (dp[j] - pdp) * scale;
          for (int64_t c = 0; c < d.D; ++c) {
            r.dv[kh + j * d.D + c] += p[j] * dout[qh + i * d.D + c];
            r.dq[qh + i * d.D + c] += ds * k[kh + j * d.D + c];
            r.dk[kh + j * d.D + c] += ds * q[qh + i * d.D + c];
          }
        }
      }
    }
  return r;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, testing::Tolerance tol,
                  const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i])) {
      EXPECT_EQ(got[i], want[i]) << what << " element " << i;
      continue;
    }
    EXPECT_NEAR(got[i], want[i], tol.atol + tol.rtol * std::abs(want[i])) << what << " element " << i;
  }
}

struct Case {
  Dims d;
  bool causal = true;
  std::vector<int64_t> seg;  // (B, T) or empty
  DType dtype = DType::f32;
  std::optional<double> scale;
};

// Runs forward and backward on random inputs of `c.dtype` and compares everything with the f64
// reference evaluated on the same (already rounded) input values.
void check_case(const Case& c, uint64_t seed) {
  const Dims& d = c.d;
  Tensor q = Tensor::randn({d.B, d.Hq, d.T, d.D}, seed, c.dtype);
  Tensor k = Tensor::randn({d.B, d.Hkv, d.S, d.D}, seed + 1, c.dtype);
  Tensor v = Tensor::randn({d.B, d.Hkv, d.S, d.D}, seed + 2, c.dtype);
  Tensor dout = Tensor::randn({d.B, d.Hq, d.T, d.D}, seed + 3, c.dtype);
  ops::AttentionOptions opt;
  opt.causal = c.causal;
  opt.scale = c.scale;
  if (!c.seg.empty()) opt.segment_ids = Tensor::from_ints(c.seg, {d.B, d.T});
  const double scale = c.scale.value_or(1.0 / std::sqrt(static_cast<double>(d.D)));
  RefOut ref = reference(d, q.to_double_vector(), k.to_double_vector(), v.to_double_vector(),
                         dout.to_double_vector(), c.causal, scale, c.seg);

  ops::AttentionOut fwd = ops::attention_fwd(q, k, v, opt);
  const DType acc = c.dtype == DType::f64 ? DType::f64 : DType::f32;
  EXPECT_EQ(fwd.out.dtype(), c.dtype);
  EXPECT_EQ(fwd.out.shape(), q.shape());
  EXPECT_EQ(fwd.lse.dtype(), acc);
  EXPECT_EQ(fwd.lse.shape(), Shape({d.B, d.Hq, d.T}));
  const auto tol = tolerance("attention", c.dtype);
  expect_close(fwd.out.to_double_vector(), ref.out, tol, "out");
  expect_close(fwd.lse.to_double_vector(), ref.lse, tolerance("attention", acc), "lse");

  ops::AttentionGrads g = ops::attention_bwd(dout, q, k, v, fwd.out, fwd.lse, opt);
  EXPECT_EQ(g.dq.dtype(), c.dtype);
  EXPECT_EQ(g.dk.shape(), k.shape());
  EXPECT_EQ(g.dv.shape(), v.shape());
  expect_close(g.dq.to_double_vector(), ref.dq, tol, "dq");
  expect_close(g.dk.to_double_vector(), ref.dk, tol, "dk");
  expect_close(g.dv.to_double_vector(), ref.dv, tol, "dv");
}

TEST(Attention, CausalMatchesReference) { check_case({{2, 2, 2, 5, 5, 4}, true}, 10); }
TEST(Attention, NonCausalMatchesReference) { check_case({{2, 2, 2, 5, 7, 4}, false}, 20); }
TEST(Attention, GqaTwoKvHeads) { check_case({{1, 4, 2, 9, 9, 8}, true}, 30); }
TEST(Attention, GqaOneKvHead) { check_case({{2, 4, 1, 9, 9, 8}, true}, 40); }
TEST(Attention, CustomScale) { check_case({{1, 2, 1, 6, 6, 4}, true, {}, DType::f32, 0.7}, 45); }

// 70 and 130 are not multiples of the 64-row blocks, so partial and skipped blocks are exercised.
TEST(Attention, CrossesBlockBoundaryCausal) { check_case({{1, 2, 1, 70, 70, 8}, true}, 50); }
TEST(Attention, CrossesBlockBoundaryNonCausal) { check_case({{1, 2, 2, 70, 130, 8}, false}, 60); }
TEST(Attention, LongerKeysThanQueriesCausal) { check_case({{1, 4, 2, 70, 130, 8}, true}, 70); }

// T > S causal: the first T - S queries see no key (out 0, lse -inf, zero gradients).
TEST(Attention, RowsWithoutVisibleKeys) {
  check_case({{1, 2, 1, 9, 5, 4}, true}, 80);
  Tensor q = Tensor::randn({1, 1, 9, 4}, 1), k = Tensor::randn({1, 1, 5, 4}, 2), v = Tensor::randn({1, 1, 5, 4}, 3);
  ops::AttentionOut r = ops::attention_fwd(q, k, v, {});
  std::vector<double> out = r.out.to_double_vector(), lse = r.lse.to_double_vector();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(lse[i], kNegInf);
    for (int c = 0; c < 4; ++c) EXPECT_EQ(out[i * 4 + c], 0.0);
  }
  EXPECT_TRUE(std::isfinite(lse[4]));
}

TEST(Attention, SegmentIdsMatchReference) {
  std::vector<int64_t> seg;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 70; ++t) seg.push_back(t < 20 + 30 * b ? 0 : (t < 66 ? 1 : 2));
  check_case({{2, 4, 2, 70, 70, 8}, true, seg}, 90);
  check_case({{2, 4, 2, 70, 70, 8}, false, seg}, 95);
}

// A packed query never sees another document: rewriting k and v of document 1 leaves the outputs
// of documents 0 and 2 bit-for-bit unchanged.
TEST(Attention, SegmentIdsIsolateDocuments) {
  const int64_t T = 80, D = 8;
  std::vector<int64_t> seg(T);
  for (int64_t t = 0; t < T; ++t) seg[t] = t < 30 ? 0 : (t < 50 ? 1 : 2);
  for (bool causal : {true, false}) {
    ops::AttentionOptions opt;
    opt.causal = causal;
    opt.segment_ids = Tensor::from_ints(seg, {1, T}, DType::i32);
    Tensor q = Tensor::randn({1, 2, T, D}, 5), k = Tensor::randn({1, 1, T, D}, 6), v = Tensor::randn({1, 1, T, D}, 7);
    Tensor k2 = ops::clone(k), v2 = ops::clone(v);
    ops::copy_(ops::narrow(k2, 2, 30, 20), Tensor::randn({1, 1, 20, D}, 8, DType::f32, 0.0, 10.0));
    ops::copy_(ops::narrow(v2, 2, 30, 20), Tensor::randn({1, 1, 20, D}, 9, DType::f32, 0.0, 10.0));
    std::vector<double> a = ops::attention_fwd(q, k, v, opt).out.to_double_vector();
    std::vector<double> b = ops::attention_fwd(q, k2, v2, opt).out.to_double_vector();
    int64_t changed = 0;
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < D; ++c) {
          const int64_t i = (h * T + t) * D + c;
          if (seg[t] == 1) changed += a[i] != b[i];
          else EXPECT_EQ(a[i], b[i]) << "causal " << causal << " head " << h << " query " << t;
        }
    EXPECT_GT(changed, 0);  // the edit did reach document 1's own queries
  }
}

TEST(Attention, Float64MatchesReference) { check_case({{1, 4, 2, 70, 70, 8}, true, {}, DType::f64}, 100); }
TEST(Attention, BFloat16WithinTolerance) { check_case({{1, 4, 2, 70, 70, 16}, true, {}, DType::bf16}, 110); }
TEST(Attention, Float16WithinTolerance) { check_case({{1, 4, 2, 70, 70, 16}, true, {}, DType::f16}, 120); }

TEST(Attention, NonContiguousInputs) {
  // (B, T, H, D) layouts viewed as (B, H, T, D), as a model produces them.
  Tensor q = ops::transpose(Tensor::randn({1, 70, 4, 8}, 1), 1, 2);
  Tensor k = ops::transpose(Tensor::randn({1, 70, 2, 8}, 2), 1, 2);
  Tensor v = ops::transpose(Tensor::randn({1, 70, 2, 8}, 3), 1, 2);
  ASSERT_FALSE(q.is_contiguous());
  Tensor dout = ops::transpose(Tensor::randn({1, 70, 4, 8}, 4), 1, 2);
  ops::AttentionOut r = ops::attention_fwd(q, k, v, {});
  ops::AttentionOut rc = ops::attention_fwd(ops::clone(q), ops::clone(k), ops::clone(v), {});
  EXPECT_EQ(r.out.to_double_vector(), rc.out.to_double_vector());
  ops::AttentionGrads g = ops::attention_bwd(dout, q, k, v, r.out, r.lse, {});
  ops::AttentionGrads gc = ops::attention_bwd(ops::clone(dout), ops::clone(q), ops::clone(k), ops::clone(v),
                                              rc.out, rc.lse, {});
  EXPECT_EQ(g.dq.to_double_vector(), gc.dq.to_double_vector());
  EXPECT_EQ(g.dk.to_double_vector(), gc.dk.to_double_vector());
  EXPECT_EQ(g.dv.to_double_vector(), gc.dv.to_double_vector());
}

// Forward, the state saved for backward (out, lse) and backward of a T = S = 1024 head allocate
// nothing of size T * S: the peak above the inputs stays far below one f32 (T, S) matrix (4 MiB).
TEST(Attention, NoQuadraticBuffers) {
  const int64_t T = 1024, D = 16;
  Tensor q = Tensor::randn({1, 1, T, D}, 1), k = Tensor::randn({1, 1, T, D}, 2), v = Tensor::randn({1, 1, T, D}, 3);
  Tensor dout = Tensor::randn({1, 1, T, D}, 4);
  const int64_t quadratic = T * T * 4;
  MemoryLedger& ledger = MemoryLedger::instance();

  ledger.reset_peaks();
  const int64_t base = ledger.snapshot(Device::cpu()).live;
  ops::AttentionOut r = ops::attention_fwd(q, k, v, {});
  const int64_t fwd_peak = ledger.snapshot(Device::cpu()).peak - base;
  EXPECT_GE(fwd_peak, r.out.nbytes() + r.lse.nbytes());  // the ledger did see the outputs
  EXPECT_LT(fwd_peak, quadratic / 4) << ledger.table();

  ledger.reset_peaks();
  const int64_t base2 = ledger.snapshot(Device::cpu()).live;
  ops::AttentionGrads g = ops::attention_bwd(dout, q, k, v, r.out, r.lse, {});
  const int64_t bwd_peak = ledger.snapshot(Device::cpu()).peak - base2;
  EXPECT_GE(bwd_peak, 3 * q.nbytes());
  EXPECT_LT(bwd_peak, quadratic / 4) << ledger.table();
}

// ---- bad input ----

void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    for (const std::string& p : parts) EXPECT_THAT(std::string(e.what()), HasSubstr(p));
  }
}

TEST(Attention, RejectsHeadMismatch) {
  Tensor q = Tensor::randn({1, 3, 4, 8}, 1), k = Tensor::randn({1, 2, 4, 8}, 2);
  expect_error([&] { ops::attention_fwd(q, k, k, {}); }, {"attention_fwd", "(1, 3, 4, 8)", "(1, 2, 4, 8)"});
}

TEST(Attention, RejectsShapeMismatch) {
  Tensor q = Tensor::randn({1, 2, 4, 8}, 1), k = Tensor::randn({1, 2, 4, 8}, 2);
  Tensor v = Tensor::randn({1, 2, 5, 8}, 3), k16 = Tensor::randn({1, 2, 4, 16}, 4);
  expect_error([&] { ops::attention_fwd(q, k, v, {}); }, {"attention_fwd", "(1, 2, 4, 8)", "(1, 2, 5, 8)"});
  expect_error([&] { ops::attention_fwd(q, k16, k16, {}); }, {"attention_fwd", "(1, 2, 4, 8)", "(1, 2, 4, 16)"});
  expect_error([&] { ops::attention_fwd(ops::view(q, {2, 4, 8}), k, k, {}); }, {"attention_fwd", "(2, 4, 8)"});
  ops::AttentionOut r = ops::attention_fwd(q, k, k, {});
  expect_error([&] { ops::attention_bwd(v, q, k, k, r.out, r.lse, {}); }, {"attention_bwd", "(1, 2, 5, 8)"});
}

TEST(Attention, RejectsDtypeMismatch) {
  Tensor q = Tensor::randn({1, 2, 4, 8}, 1), k = Tensor::randn({1, 2, 4, 8}, 2, DType::f64);
  expect_error([&] { ops::attention_fwd(q, k, k, {}); }, {"attention_fwd", "f32", "f64", "(1, 2, 4, 8)"});
  Tensor qi = Tensor::zeros({1, 2, 4, 8}, DType::i32);
  expect_error([&] { ops::attention_fwd(qi, qi, qi, {}); }, {"attention_fwd", "i32"});
}

TEST(Attention, RejectsBadSegmentIds) {
  Tensor q = Tensor::randn({1, 2, 4, 8}, 1), k = Tensor::randn({1, 2, 6, 8}, 2);
  ops::AttentionOptions opt;
  opt.segment_ids = Tensor::zeros({1, 4}, DType::i64);
  expect_error([&] { ops::attention_fwd(q, k, k, opt); }, {"attention_fwd", "segment_ids", "(1, 2, 6, 8)"});
  opt.segment_ids = Tensor::zeros({1, 5}, DType::i64);
  expect_error([&] { ops::attention_fwd(q, q, q, opt); }, {"attention_fwd", "segment_ids", "(1, 5)"});
  opt.segment_ids = Tensor::zeros({1, 4}, DType::f32);
  expect_error([&] { ops::attention_fwd(q, q, q, opt); }, {"attention_fwd", "segment_ids", "f32"});
}

}  // namespace
}  // namespace shardlab
