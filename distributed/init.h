// init_process_group: the world group of this run. Under an MPI launcher (mpirun, mpiexec, srun
// with PMI/PMIx) or when MPI is already initialised it is the MPI world; otherwise a world-size-1
// LocalProcessGroup, and MPI is never initialised.
#pragma once

#include <chrono>
#include <memory>

#include "distributed/process_group.h"

namespace shardlab::dist {

struct InitOptions {
  // A collective that has not completed after this long ends the job (a dead or hung peer).
  // The environment variable SHARDLAB_COLLECTIVE_TIMEOUT_S (seconds) overrides it.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // Every collective of the world group (and its sub-groups) is recorded here; a fresh one if null.
  std::shared_ptr<CommLedger> ledger;
};

// Collective over the world when MPI is used (every rank must call it).
std::shared_ptr<ProcessGroup> init_process_group(const InitOptions& options = {});

// The timeout init_process_group uses: SHARDLAB_COLLECTIVE_TIMEOUT_S when set (an error naming the
// variable when it is not a positive number), else `fallback`.
std::chrono::milliseconds collective_timeout_from_env(std::chrono::milliseconds fallback);

// This process's rank among the ranks on its node, as the launcher tells it: LOCAL_RANK (torchrun,
// DeepSpeed), OMPI_COMM_WORLD_LOCAL_RANK (Open MPI), MPI_LOCALRANKID (MPICH), SLURM_LOCALID (srun),
// the first one set; 0 when none is. A value that is not a non-negative integer is an error naming
// the variable. Which GPU a rank uses follows from it.
int local_rank_from_env();

}  // namespace shardlab::dist
