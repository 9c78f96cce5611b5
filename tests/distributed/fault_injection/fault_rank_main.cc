// A training-like loop of all_reduces in which rank 1 misbehaves on purpose, so the fault tests
// (tests/distributed/fault_test.sh) can check that the other ranks end the job with a clear error
// instead of hanging. Usage: fault_rank_program hang|kill|none
#include <csignal>
#include <cstdio>
#include <cstring>
#include <thread>

#include "core/error.h"
#include "distributed/init.h"

int main(int argc, char** argv) {
  using namespace shardlab;
  const char* mode = argc > 1 ? argv[1] : "none";
  if (std::strcmp(mode, "hang") != 0 && std::strcmp(mode, "kill") != 0 && std::strcmp(mode, "none") != 0) {
    std::fprintf(stderr, "usage: %s hang|kill|none\n", argv[0]);
    return 2;
  }
  try {
    std::shared_ptr<dist::ProcessGroup> world = dist::init_process_group();
    for (int step = 0; step < 6; ++step) {
      if (world->rank() == 1 && step == 3) {
        if (std::strcmp(mode, "hang") == 0) std::this_thread::sleep_for(std::chrono::hours(1));
        if (std::strcmp(mode, "kill") == 0) std::raise(SIGKILL);
      }
      Tensor grads = Tensor::full({1 << 16}, 1.0, DType::f32);
      world->all_reduce(grads)->wait();
      SL_CHECK(grads.to_double_vector()[0] == world->size(), "step ", step, ": wrong sum");
    }
    std::printf("rank %d: all steps done\n", world->rank());
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "fault_rank_program caught: %s\n", e.what());
    return 1;
  }
}
