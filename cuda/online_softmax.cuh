// The online (running max, sum of exponentials) state shared by the softmax and cross-entropy
// kernels: one pass over a row gives max m and s = sum exp(x - m), and partial states of several
// threads combine exactly commutatively (for the deterministic reductions of block_reduce.cuh).
#pragma once

#include <cuda_runtime.h>

#include <limits>

namespace shardlab::cuda::online_softmax {

// Accurate (not the fast-math intrinsic) exp/log in the arithmetic type, as the CPU's std::exp.
__device__ inline float exp_acc(float x) { return ::expf(x); }
__device__ inline double exp_acc(double x) { return ::exp(x); }
__device__ inline float log_acc(float x) { return ::logf(x); }
__device__ inline double log_acc(double x) { return ::log(x); }
// Products and sums the compiler may not contract into an FMA, so that combine(a, b) and
// combine(b, a) round identically (block_reduce.cuh needs a commutative combine).
__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ inline float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ inline double add_rn(double a, double b) { return __dadd_rn(a, b); }

// The running max m of the values seen and s = sum exp(x - m) over them (m = -inf, s = 0: none).
template <typename A>
struct MaxSumExp {
  A m;
  A s;
};

template <typename A>
__device__ inline MaxSumExp<A> mse_empty() {
  return {-std::numeric_limits<A>::infinity(), A(0)};
}

// Adds one value: a new max rescales the sum (one exp either way). A -inf value adds nothing (and
// must not: exp(-inf - -inf) is NaN); a NaN value makes the sum NaN, as on the CPU. A +inf max
// adds exp(x - x) = NaN as on the CPU (x - x is 0 for finite x, so finite sums are unchanged).
template <typename A>
__device__ inline MaxSumExp<A> mse_push(MaxSumExp<A> st, A x) {
  if (x > st.m) {
    st.s = st.s * exp_acc(st.m - x) + (A(1) + (x - x));
    st.m = x;
  } else if (x != -std::numeric_limits<A>::infinity()) {
    st.s += exp_acc(x - st.m);
  }
  return st;
}

template <typename A>
struct MseCombine {
  __device__ MaxSumExp<A> operator()(MaxSumExp<A> a, MaxSumExp<A> b) const {
    const A m = a.m > b.m ? a.m : b.m;
    if (m == -std::numeric_limits<A>::infinity()) return {m, add_rn(a.s, b.s)};  // both empty
    return {m, add_rn(mul_rn(a.s, exp_acc(a.m - m)), mul_rn(b.s, exp_acc(b.m - m)))};
  }
};

}  // namespace shardlab::cuda::online_softmax
