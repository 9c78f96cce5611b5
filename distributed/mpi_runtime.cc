// The MPI runtime: init/finalize, the communication thread's loop (post in FIFO order, poll with
// MPI_Test against each collective's deadline), and job termination after a lost peer.
//
// NOTE [one MPI thread]: MPI is initialised with MPI_THREAD_SERIALIZED and, after MPI_Init, only
// the communication thread calls MPI. One thread serves every group: it only posts non-blocking
// collectives and polls them, so collectives of several groups (the shard and the replicate group
// of a 2-D mesh) are in flight together and none can block another. Compared with a thread per
// group under MPI_THREAD_MULTIPLE this needs no MPI-internal locking, works with MPI builds that
// lack THREAD_MULTIPLE, and on an oversubscribed machine leaves one poller per rank, not one per
// group. Completion is FIFO per communicator: only the oldest in-flight request of a
// communicator is tested (MPI progress is global, so the others still advance meanwhile).
#include "distributed/mpi_runtime.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/trace.h"
#include "distributed/comm_ledger.h"
#include "distributed/tracing.h"

namespace shardlab::dist {

namespace {

// How long terminate() lets a thread that was woken from wait() unwind and report before the job
// is aborted.
constexpr auto kAbortGrace = std::chrono::milliseconds(1000);
// wait() gives the communication thread this long past a deadline to report the timeout itself.
constexpr auto kReportSlack = std::chrono::seconds(10);
// Polling back-off while collectives are in flight: short enough for latency, long enough not to
// starve compute on oversubscribed cores.
constexpr auto kMinPoll = std::chrono::microseconds(10);
constexpr auto kMaxPoll = std::chrono::microseconds(100);

double seconds_since(CommClock::time_point t) {
  return std::chrono::duration<double>(CommClock::now() - t).count();
}

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, length);
}

}  // namespace

std::string human_seconds(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", seconds);
  return buf;
}

std::string human_bytes(int64_t bytes) {
  char buf[32];
  if (bytes < 1024) {
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  } else {
    const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
    double value = bytes / 1024.0;
    int unit = 0;
    while (value >= 1024.0 && unit < 3) value /= 1024.0, ++unit;
    std::snprintf(buf, sizeof buf, "%.1f %s", value, units[unit]);
  }
  return buf;
}

// ---------------------------------------------------------------- MpiWork

MpiWork::MpiWork(CollectiveKind kind, std::string what, std::string group, int64_t payload_bytes, int64_t wire_bytes,
                 std::chrono::milliseconds timeout, std::shared_ptr<CommLedger> ledger)
    : kind_(kind), what_(std::move(what)), group_(std::move(group)), payload_bytes_(payload_bytes), wire_bytes_(wire_bytes),
      timeout_(timeout), ledger_(std::move(ledger)) {}

std::string MpiWork::timeout_message() const {
  return what_ + " did not complete within " + human_seconds(timeout_.count() / 1000.0) + " (" +
         human_seconds(std::round(seconds_since(issued_) * 10) / 10) +
         " since issue): a peer rank died or hung";
}

void MpiWork::wait() {
  const auto entered = CommClock::now();
  bool finished = false;
  std::string error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    finished = changed_.wait_until(lock, deadline() + kReportSlack, [&] { return state_ != State::pending; });
    if (state_ == State::failed) error = error_;
  }
  ledger_->record_blocked(kind_, seconds_since(entered));
  if (!finished) {
    // The communication thread is stuck inside MPI: report from here and end the job anyway.
    error = timeout_message() + " (the communication thread did not report it)";
    std::thread([error] { MpiRuntime::get().terminate(error); }).detach();
  }
  if (!error.empty()) throw Error(error);
}

bool MpiWork::is_completed() {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_ != State::pending;
}

void MpiWork::mark_done() {
  ledger_->record(kind_, payload_bytes_, wire_bytes_, seconds_since(issued_));
  // From issue (on the caller's thread) to completion, drawn on the communication thread.
  if (trace::enabled())
    trace::record_span(collective_name(kind_), trace::Category::collective,
                       std::chrono::duration_cast<std::chrono::nanoseconds>(issued_.time_since_epoch()).count(),
                       collective_trace_args(kind_, group_, payload_bytes_));
  std::lock_guard<std::mutex> lock(mutex_);
  state_ = State::done;
  changed_.notify_all();
}

void MpiWork::mark_failed(const std::string& message) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_ != State::pending) return;
  state_ = State::failed;
  error_ = message;
  changed_.notify_all();
}

// ---------------------------------------------------------------- MpiRuntime

struct MpiRuntime::State {
  struct Item {
    MpiCollective collective;
    std::function<void()> task;  // set for blocking calls run by run()
  };
  struct InFlight {
    MpiCollective collective;
    MPI_Request request = MPI_REQUEST_NULL;
  };
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<Item> queued;
  bool stop = false;
  std::atomic<bool> terminating{false};
  std::vector<InFlight> in_flight;  // communication thread only
  std::thread thread;
};

bool MpiRuntime::launched_by_mpi_launcher() {
  // Open MPI's mpirun, MPICH/Hydra and Slurm's srun (through PMI-1/2 or PMIx) set these.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

bool MpiRuntime::mpi_initialized() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  return initialized != 0;
}

MpiRuntime& MpiRuntime::get() {
  // Never destroyed: shut down by the atexit handler instead, so no static destructor runs MPI.
  static MpiRuntime* runtime = new MpiRuntime();
  return *runtime;
}

MpiRuntime::MpiRuntime() : state_(std::make_unique<State>()) {
  int provided = 0;
  if (!mpi_initialized()) {
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    we_initialized_ = true;
  } else {
    int finalized = 0;
    MPI_Finalized(&finalized);
    SL_CHECK(!finalized, "init_process_group: MPI has already been finalised in this process");
    MPI_Query_thread(&provided);
  }
  SL_CHECK(provided >= MPI_THREAD_SERIALIZED, "init_process_group: MPI provides thread level ", provided,
           "; shardlab's communication thread needs MPI_THREAD_SERIALIZED (", MPI_THREAD_SERIALIZED,
           ") or higher (initialise MPI with MPI_Init_thread)");
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size_);
  state_->thread = std::thread([this] { loop(); });
  std::atexit(&MpiRuntime::shutdown_at_exit);
}

void MpiRuntime::submit(MpiCollective collective) {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->queued.push_back({std::move(collective), {}});
  }
  state_->wake.notify_one();
}

void MpiRuntime::run(const std::string& what, std::chrono::milliseconds timeout, std::function<void()> fn) {
  SL_CHECK(std::this_thread::get_id() != state_->thread.get_id(), what, ": called on the communication thread");
  struct Done {
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;
    std::exception_ptr error;
  };
  auto done = std::make_shared<Done>();
  auto task = [fn = std::move(fn), done] {
    std::exception_ptr error;
    try {
      fn();
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(done->mutex);
    done->done = true;
    done->error = error;
    done->cv.notify_all();
  };
  post(std::move(task));
  std::unique_lock<std::mutex> lock(done->mutex);
  if (!done->cv.wait_for(lock, timeout, [&] { return done->done; }))
    terminate("rank " + std::to_string(world_rank_) + ": " + what + " did not complete within " +
              human_seconds(timeout.count() / 1000.0) + ": a peer rank died or hung");
  if (done->error) std::rethrow_exception(done->error);
}

void MpiRuntime::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->queued.push_back({{}, std::move(fn)});
  }
  state_->wake.notify_one();
}

void MpiRuntime::loop() {
  trace::set_thread_name("communication");
  State& s = *state_;
  auto poll_wait = kMinPoll;
  auto fail = [&](MpiWork& work, const std::string& message) {
    work.mark_failed(message);
    for (State::InFlight& f : s.in_flight)
      f.collective.work->mark_failed(f.collective.work->what() + " was abandoned: " + message);
    terminate(message);
  };
  for (;;) {
    std::deque<State::Item> batch;
    {
      std::unique_lock<std::mutex> lock(s.mutex);
      auto has_news = [&] { return s.stop || !s.queued.empty(); };
      if (s.in_flight.empty())
        s.wake.wait(lock, has_news);
      else
        s.wake.wait_for(lock, poll_wait, has_news);
      if (s.stop && s.queued.empty() && s.in_flight.empty()) return;
      batch.swap(s.queued);
    }
    bool progressed = !batch.empty();
    for (State::Item& item : batch) {
      if (item.task) {
        item.task();
        continue;
      }
      State::InFlight f{std::move(item.collective)};
      const int rc = f.collective.start(&f.request);
      if (rc != MPI_SUCCESS) fail(*f.collective.work, f.collective.work->what() + " failed to start: " + mpi_error_string(rc));
      s.in_flight.push_back(std::move(f));
    }
    std::vector<MPI_Comm> waiting_comms;  // communicators whose oldest collective is still running
    for (auto it = s.in_flight.begin(); it != s.in_flight.end();) {
      MpiWork& work = *it->collective.work;
      if (std::find(waiting_comms.begin(), waiting_comms.end(), it->collective.comm) != waiting_comms.end()) {
        ++it;
        continue;
      }
      int completed = 0;
      const int rc = MPI_Test(&it->request, &completed, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) fail(work, work.what() + " failed: " + mpi_error_string(rc));
      if (!completed) {
        if (CommClock::now() > work.deadline()) fail(work, work.timeout_message());
        waiting_comms.push_back(it->collective.comm);
        ++it;
        continue;
      }
      if (it->collective.finish) {
        try {
          it->collective.finish();
        } catch (const std::exception& e) {
          fail(work, work.what() + " failed after the transfer: " + e.what());
        }
      }
      auto done = it->collective.work;
      it = s.in_flight.erase(it);  // releases the tensors before the waiter wakes
      done->mark_done();
      progressed = true;
    }
    poll_wait = progressed ? kMinPoll : std::min(poll_wait * 2, kMaxPoll);
  }
}

void MpiRuntime::terminate(const std::string& message) {
  if (state_->terminating.exchange(true)) {
    // Someone else is already ending the job.
    std::this_thread::sleep_for(kAbortGrace * 10);
    _exit(1);
  }
  std::fprintf(stderr, "shardlab: %s\n", message.c_str());
  std::fflush(stderr);
  std::this_thread::sleep_for(kAbortGrace);
  // MPI_Abort only from the thread that owns MPI; any other thread just exits (the launcher sees
  // a rank end with a non-zero code and takes the job down).
  if (std::this_thread::get_id() == state_->thread.get_id()) MPI_Abort(MPI_COMM_WORLD, 1);
  _exit(1);
}

void MpiRuntime::shutdown_at_exit() {
  MpiRuntime& self = get();
  State& s = *self.state_;
  if (s.terminating.load()) {
    // The job is being aborted; never finalise a broken MPI (it would hang).
    if (std::this_thread::get_id() == s.thread.get_id()) return;
    _exit(1);
  }
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.stop = true;
  }
  s.wake.notify_one();
  s.thread.join();  // drains what is in flight (each bounded by its deadline)
  if (self.we_initialized_) MPI_Finalize();
}

}  // namespace shardlab::dist
