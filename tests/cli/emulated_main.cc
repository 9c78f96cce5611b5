// The shardlab command on the emulated CUDA device (tests/support/emulated_cuda.h): `device: cuda`
// runs end to end on a machine without a GPU — the command's device path (model and batches on the
// device, the backend choice for collectives, ZeRO-3 buffers released in place, offload) with CPU
// kernels behind the device slots. For tests only (tests/cli/emulated_device_test.sh).
#include "tests/support/emulated_cuda.h"
#include "tools/cli/commands.h"

int main(int argc, char** argv) {
  shardlab::testing::use_emulated_cuda();
  return shardlab::cli::run_command_line(argc, argv);
}
