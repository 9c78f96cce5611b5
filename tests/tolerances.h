// Every tolerance the tests use, in one table: per op family and dtype, the (atol, rtol) within
// which a kernel must agree with its reference (|got - want| <= atol + rtol * |want|).
// Why these numbers: f64 references are exact up to rounding (1e-12 relative); f32 kernels that
// reorder sums (blocked GEMM, online softmax) differ from a naive f64 reference by ~1e-6 relative;
// bf16 keeps 8 mantissa bits (2^-8 = 0.4% per rounding) and f16 11 bits (2^-11 = 0.05%).
#pragma once

#include <string_view>

#include "core/dtype.h"

namespace shardlab::testing {

struct Tolerance {
  double atol;
  double rtol;
};

inline Tolerance tolerance(std::string_view family, DType dtype) {
  // Ops whose results sum over long rows (matmul, attention, cross-entropy) get looser f32 and
  // 16-bit bounds: the error of a K-term sum grows like sqrt(K) roundings.
  const bool long_sums = family == "matmul" || family == "attention" || family == "cross_entropy" ||
                         family == "reduce" || family == "softmax" || family == "rms_norm";
  switch (dtype) {
    case DType::f64: return {1e-12, 1e-10};
    case DType::f32: return long_sums ? Tolerance{1e-5, 1e-4} : Tolerance{1e-6, 1e-5};
    case DType::bf16: return long_sums ? Tolerance{2e-2, 2e-2} : Tolerance{1e-2, 8e-3};
    case DType::f16: return long_sums ? Tolerance{2e-3, 2e-3} : Tolerance{1e-3, 1e-3};
    default: return {0.0, 0.0};  // integers are exact
  }
}

// gradcheck (float64 central differences, eps 1e-6): truncation error is O(eps^2 f''') and
// rounding error O(1e-16 / eps) = 1e-10, so 1e-6 absolute + 1e-4 relative leaves a wide margin
// while still catching any wrong formula (those are off by O(1)).
inline constexpr double kGradcheckEps = 1e-6;
inline constexpr double kGradcheckAtol = 1e-6;
inline constexpr double kGradcheckRtol = 1e-4;

}  // namespace shardlab::testing
