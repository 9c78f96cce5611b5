// Choosing the world group: MPI when launched by an MPI launcher or already initialised, else local.
#include "distributed/init.h"

#include <cmath>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "distributed/local_process_group.h"
#include "distributed/mpi_process_group.h"
#include "distributed/mpi_runtime.h"

namespace shardlab::dist {

std::chrono::milliseconds collective_timeout_from_env(std::chrono::milliseconds fallback) {
  const char* text = std::getenv("SHARDLAB_COLLECTIVE_TIMEOUT_S");
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const double seconds = std::strtod(text, &end);
  SL_CHECK(end != text && *end == '\0' && std::isfinite(seconds) && seconds > 0,
           "SHARDLAB_COLLECTIVE_TIMEOUT_S='", text, "' is not a positive number of seconds");
  return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(seconds * 1000.0)));
}

int local_rank_from_env() {
  for (const char* name : {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
    const char* text = std::getenv(name);
    if (text == nullptr || *text == '\0') continue;
    char* end = nullptr;
    const long value = std::strtol(text, &end, 10);
    SL_CHECK(end != text && *end == '\0' && value >= 0 && value < (1L << 20), name, "='", text,
             "' is not a local rank (a non-negative integer)");
    return static_cast<int>(value);
  }
  return 0;
}

std::shared_ptr<ProcessGroup> init_process_group(const InitOptions& options) {
  const std::chrono::milliseconds timeout = collective_timeout_from_env(options.timeout);
  SL_CHECK(timeout.count() > 0, "init_process_group: the collective timeout must be positive, got ", timeout.count(),
           " ms");
  if (!MpiRuntime::launched_by_mpi_launcher() && !MpiRuntime::mpi_initialized()) {
    auto local = std::make_shared<LocalProcessGroup>(options.ledger);
    local->set_timeout(timeout);
    return local;
  }
  return MpiProcessGroup::world(timeout, options.ledger);
}

}  // namespace shardlab::dist
