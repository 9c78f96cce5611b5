// The precision policy: dtypes per role for f32, bf16 and fp16 runs, the reduce-dtype default and
// its checks.
#include <gtest/gtest.h>

#include "core/error.h"
#include "nn/precision_policy.h"

namespace shardlab::nn {
namespace {

TEST(PrecisionPolicy, RolesPerMode) {
  PrecisionPolicy f32 = make_precision_policy(false, false);
  EXPECT_EQ(f32.param_dtype, DType::f32);
  EXPECT_FALSE(f32.uses_master_weights());
  EXPECT_EQ(f32.describe(), "params f32, reduce f32, loss f32, no loss scaling");
  PrecisionPolicy bf16 = make_precision_policy(true, false);
  EXPECT_EQ(bf16.param_dtype, DType::bf16);
  EXPECT_EQ(bf16.reduce_dtype, DType::bf16);  // DeepSpeed / FSDP2 default: the gradient dtype
  EXPECT_TRUE(bf16.uses_master_weights());
  EXPECT_FALSE(bf16.loss_scaling);
  PrecisionPolicy fp16 = make_precision_policy(false, true, DType::f32);
  EXPECT_EQ(fp16.reduce_dtype, DType::f32);
  EXPECT_TRUE(fp16.loss_scaling);
  EXPECT_EQ(fp16.describe(), "params f16, masters f32, reduce f32, loss f32, dynamic loss scaling");
}

TEST(PrecisionPolicy, RejectsContradictions) {
  EXPECT_THROW(make_precision_policy(true, true), Error);
  EXPECT_THROW(make_precision_policy(false, false, DType::bf16), Error);  // f32 grads reduced in bf16
  EXPECT_THROW(make_precision_policy(true, false, DType::i32), Error);
}

}  // namespace
}  // namespace shardlab::nn
