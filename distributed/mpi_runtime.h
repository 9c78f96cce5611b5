// The MPI runtime of one process: MPI_Init_thread / MPI_Finalize, and the one communication thread
// that makes every MPI call after init, so collectives progress while the caller keeps computing.
#pragma once

#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "distributed/process_group.h"

namespace shardlab::dist {

using CommClock = std::chrono::steady_clock;

// One collective issued on the MPI backend. wait() blocks until the communication thread reports
// it done or failed; a failure (timeout, MPI error) is thrown as shardlab::Error and the process is
// terminated by the runtime shortly after, since MPI state is unusable once a peer is lost.
class MpiWork final : public Work {
 public:
  // `what` names it in errors: "rank 0: all_reduce #17 on group 'world' (4.0 MiB)".
  // `group` names the group in its trace span.
  MpiWork(CollectiveKind kind, std::string what, std::string group, int64_t payload_bytes, int64_t wire_bytes,
          std::chrono::milliseconds timeout, std::shared_ptr<CommLedger> ledger);
  void wait() override;
  bool is_completed() override;

  // Called by the communication thread only.
  void mark_done();
  void mark_failed(const std::string& message);
  const std::string& what() const { return what_; }
  CommClock::time_point deadline() const { return issued_ + timeout_; }
  std::string timeout_message() const;

 private:
  enum class State { pending, done, failed };
  const CollectiveKind kind_;
  const std::string what_;
  const std::string group_;
  const int64_t payload_bytes_;
  const int64_t wire_bytes_;
  const std::chrono::milliseconds timeout_;
  const std::shared_ptr<CommLedger> ledger_;
  const CommClock::time_point issued_ = CommClock::now();
  std::mutex mutex_;
  std::condition_variable changed_;
  State state_ = State::pending;
  std::string error_;
};

// A non-blocking collective for the communication thread: `start` runs on that thread and posts
// the MPI_I* call (returning its MPI error code), `finish` runs there after completion (copying out
// of staging buffers, dividing for avg). The lambdas own the tensors they touch.
struct MpiCollective {
  std::shared_ptr<MpiWork> work;
  MPI_Comm comm = MPI_COMM_NULL;  // completion is FIFO per communicator
  std::function<int(MPI_Request*)> start;
  std::function<void()> finish;
};

class MpiRuntime {
 public:
  // Initialises MPI on first use (or adopts an MPI someone initialised with at least
  // MPI_THREAD_SERIALIZED) and starts the communication thread; shut down and finalised at exit.
  static MpiRuntime& get();
  // Whether this process was started by an MPI launcher (mpirun, mpiexec, srun with PMI/PMIx).
  static bool launched_by_mpi_launcher();
  // Whether MPI_Init has run in this process (by us or by the program).
  static bool mpi_initialized();

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }

  // Queues a collective; the thread posts it in submission order.
  void submit(MpiCollective collective);
  // Runs blocking MPI calls (creating a communicator) on the communication thread and waits for
  // them; past `timeout` the process is terminated with a message naming `what`.
  void run(const std::string& what, std::chrono::milliseconds timeout, std::function<void()> fn);
  // Queues `fn` (local MPI calls such as freeing a communicator) without waiting for it. After
  // shutdown it never runs, which is fine for what MPI_Finalize cleans up anyway.
  void post(std::function<void()> fn);

  // Prints `message`, waits a moment so a thread unwinding from wait() can report it too, then
  // aborts the whole job (MPI_Abort): after a lost peer MPI cannot be used or finalised.
  [[noreturn]] void terminate(const std::string& message);

  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

 private:
  MpiRuntime();
  struct State;
  void loop();
  // The atexit handler: drains the thread and finalises MPI (skipped once the job is aborting).
  static void shutdown_at_exit();

  int world_rank_ = 0;
  int world_size_ = 1;
  bool we_initialized_ = false;
  std::unique_ptr<State> state_;
};

// "4.0 MiB", "512 B" and "30 s", "2.5 s": byte counts and durations in error messages.
std::string human_bytes(int64_t bytes);
std::string human_seconds(double seconds);

}  // namespace shardlab::dist
