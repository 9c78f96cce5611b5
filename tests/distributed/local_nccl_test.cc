// The NCCL group at world size 1 (bootstrapped over the local group) on device memory wrapped by
// Tensor::from_blob: values, ledger and argument errors. Built with NCCL; skipped without a GPU.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#ifdef SHARDLAB_HAVE_NCCL
#include <cuda_runtime_api.h>

#include "cuda/device.h"
#include "distributed/comm_ledger.h"
#include "distributed/local_process_group.h"
#include "distributed/nccl_process_group.h"

namespace shardlab::dist {
namespace {

using ::testing::HasSubstr;

// n device floats holding `values`, freed with the tensor.
Tensor device_floats(const std::vector<float>& values) {
  void* p = nullptr;
  SL_CUDA_CHECK(cudaMalloc(&p, values.size() * sizeof(float)));
  SL_CUDA_CHECK(cudaMemcpy(p, values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice));
  return Tensor::from_blob(p, {static_cast<int64_t>(values.size())}, DType::f32, Device::cuda(0), [](void* q) { cudaFree(q); });
}

std::vector<float> to_host(const Tensor& t) {
  std::vector<float> out(t.numel());
  SL_CUDA_CHECK(cudaMemcpy(out.data(), t.raw_data(), out.size() * sizeof(float), cudaMemcpyDeviceToHost));
  return out;
}

TEST(NcclProcessGroupLocal, OneRankCollectivesOnDeviceMemory) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  auto group = NcclProcessGroup::create(std::make_shared<LocalProcessGroup>(), 0);
  ProcessGroup& g = *group;
  EXPECT_EQ(g.backend_name(), "nccl");
  Tensor t = device_floats({1, 2, 3, 4});
  g.all_reduce(t, ReduceOp::avg)->wait();
  EXPECT_EQ(to_host(t), (std::vector<float>{1, 2, 3, 4}));
  Tensor gathered = device_floats({0, 0, 0, 0});
  g.all_gather(gathered, t)->wait();
  EXPECT_EQ(to_host(gathered), (std::vector<float>{1, 2, 3, 4}));
  Tensor scattered = device_floats({0, 0, 0, 0});
  g.reduce_scatter(scattered, gathered)->wait();
  EXPECT_EQ(to_host(scattered), (std::vector<float>{1, 2, 3, 4}));
  g.broadcast(t, 0)->wait();
  g.barrier()->wait();
  EXPECT_EQ(g.ledger().total().calls, 6);  // the unique-id broadcast on the bootstrap group + 5
  EXPECT_EQ(g.ledger().stats(CollectiveKind::all_gather).payload_bytes, 16);
}

TEST(NcclProcessGroupLocal, HostTensorsAreAnError) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  auto group = NcclProcessGroup::create(std::make_shared<LocalProcessGroup>(), 0);
  Tensor host = Tensor::zeros({4}, DType::f32);
  try {
    group->all_reduce(host, ReduceOp::sum);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("the NCCL backend takes tensors on cuda:0, got one on cpu"));
  }
}

}  // namespace
}  // namespace shardlab::dist
#endif  // SHARDLAB_HAVE_NCCL
