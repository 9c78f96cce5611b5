// The argument checks of attention_fwd / attention_bwd that do not depend on the backend, shared
// by the CPU and CUDA kernels so their errors cannot drift apart: ranks, dtypes, shapes, grouped
// heads, the scale and the segment ids. Each backend checks devices itself first.
#pragma once

#include <cstdint>

#include "core/ops/fused.h"

namespace shardlab::ops {

struct AttentionDims {
  int64_t B = 0, Hq = 0, Hkv = 0, T = 0, S = 0, D = 0;
  double scale = 1.0;  // the option, or 1/sqrt(D)
};

// q (B, Hq, T, D), k and v (B, Hkv, S, D) of one float dtype with Hq a multiple of Hkv; a finite
// scale; segment ids (when given) i32/i64 of shape (B, T) with T == S. Errors name `op`.
AttentionDims check_attention_args(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                                   const AttentionOptions& options);

}  // namespace shardlab::ops
