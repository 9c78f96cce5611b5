// copy_async: argument errors name the culprit before any backend is asked, and on the emulated
// device (tests/support/emulated_cuda.h, whose copies land only at wait()) the bytes arrive at
// wait() in both directions — the property the offload paths rely on and their tests exercise.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "core/async_copy.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/trace.h"
#include "tests/support/emulated_cuda.h"

namespace shardlab {
namespace {

using ::testing::HasSubstr;

std::string error_of(const Tensor& dst, const Tensor& src) {
  try {
    copy_async(dst, src);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(CopyAsync, ErrorsNameTheCulprit) {
  testing::use_emulated_cuda();
  const Tensor host = Tensor::zeros({4, 3});
  const Tensor dev = Tensor::zeros({4, 3}, DType::f32, Device::cuda(0));
  EXPECT_THAT(error_of(host, Tensor::zeros({4, 3})), HasSubstr("exactly one side must be on the CPU, got cpu -> cpu"));
  EXPECT_THAT(error_of(dev, Tensor::zeros({4, 3}, DType::bf16)), HasSubstr("dtype mismatch: bf16 -> f32"));
  EXPECT_THAT(error_of(dev, Tensor::zeros({3, 4})), HasSubstr("shape mismatch: (3, 4) -> (4, 3)"));
  EXPECT_THAT(error_of(dev, ops::transpose(Tensor::zeros({3, 4}), 0, 1)), HasSubstr("must be contiguous"));
  EXPECT_THAT(error_of(Tensor(), host), HasSubstr("undefined tensor"));
  testing::remove_emulated_cuda();
  EXPECT_THAT(error_of(dev, host), HasSubstr("copy_async"));  // no backend: named, not a crash
}

TEST(CopyAsync, BytesArriveAtWaitBothWays) {
  testing::use_emulated_cuda();
  Tensor src = Tensor::empty_pinned({5, 7});
  EXPECT_TRUE(src.is_pinned());
  ops::copy_(src, ops::reshape(Tensor::arange(35, DType::f32), {5, 7}));
  Tensor up = Tensor::zeros({5, 7}, DType::f32, Device::cuda(0));
  PendingCopyHandle h = copy_async(up, src);
  EXPECT_EQ(up.to_double_vector(), std::vector<double>(35, 0.0)) << "the emulated copy lands only at wait()";
  h->wait();
  EXPECT_EQ(up.to_double_vector(), src.to_double_vector());
  h->wait();  // idempotent
  Tensor down = Tensor::empty_pinned({5, 7});
  ops::fill_(down, -1.0);
  copy_async(down, ops::mul_scalar(up, 2.0))->wait();  // the handle keeps the temporary source alive
  const std::vector<double> twice = down.to_double_vector();
  for (int64_t i = 0; i < 35; ++i) EXPECT_EQ(twice[i], 2.0 * i);
  testing::remove_emulated_cuda();
}

// Host<->device copies are visible in a trace: Tensor::to, copy_async's issue and the host's wait.
TEST(CopyAsync, CopiesAreTraced) {
  testing::use_emulated_cuda();
  trace::start();
  const Tensor dev = Tensor::ones({64}).to(Device::cuda(0));
  Tensor back = Tensor::empty_pinned({64});
  copy_async(back, dev)->wait();
  trace::stop();
  std::vector<std::string> copies;
  for (const trace::Event& e : trace::snapshot().events)
    if (e.category == trace::Category::copy) {
      copies.push_back(e.name);
      EXPECT_THAT(e.args, HasSubstr("\"bytes\":256")) << e.name;
    }
  std::sort(copies.begin(), copies.end());
  EXPECT_EQ(copies, (std::vector<std::string>{"async copy to host", "copy to device", "wait for async copy"}));
  testing::remove_emulated_cuda();
}

}  // namespace
}  // namespace shardlab
