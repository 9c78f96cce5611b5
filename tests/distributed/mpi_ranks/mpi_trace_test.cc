// The merged trace under mpirun: every rank's spans reach rank 0's file as process "rank R",
// collectives (two in flight together) are drawn on the communication thread with kind, group and
// bytes, compute spans on the main thread, and the merged clock starts at 0.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include <unistd.h>

#include "core/json.h"
#include "core/trace.h"
#include "distributed/tracing.h"
#include "tests/distributed/mpi_ranks/mpi_test_world.h"

namespace shardlab::dist {
namespace {

using testing::world;

TEST(MpiTrace, MergedTraceHasEveryRankAndCollectivesOnTheCommunicationThread) {
  ProcessGroup& g = world();
  // Only rank 0 writes; the name carries rank 0's pid so that concurrent jobs do not collide.
  Tensor pid = Tensor::full({1}, g.rank() == 0 ? static_cast<double>(::getpid()) : 0.0, DType::i64);
  g.broadcast(pid, 0)->wait();
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("shardlab_mpi_trace_" + std::to_string(pid.data<int64_t>()[0]) + ".json")).string();

  trace::start();
  {
    SL_TRACE_SCOPE("optimizer step", optimizer);
    Tensor a = Tensor::full({1000}, 1.0, DType::f64), b = Tensor::full({10}, 2.0, DType::f32);
    WorkHandle wa = g.all_reduce(a), wb = g.all_reduce(b);
    wb->wait();
    wa->wait();
  }
  write_merged_trace(g, path);
  EXPECT_FALSE(trace::enabled());
  if (g.rank() != 0) return;

  const json::Value doc = json::parse_file(path);
  std::filesystem::remove(path);
  std::map<std::pair<int64_t, int64_t>, std::string> threads;
  std::map<int64_t, std::string> processes;
  for (const json::Value& e : doc.at("traceEvents").as_array())
    if (e.at("ph").as_string() == "M" && e.at("name").as_string() == "thread_name")
      threads[{e.at("pid").as_int(), e.at("tid").as_int()}] = e.at("args").at("name").as_string();
    else if (e.at("ph").as_string() == "M" && e.at("name").as_string() == "process_name")
      processes[e.at("pid").as_int()] = e.at("args").at("name").as_string();
  ASSERT_EQ(processes.size(), static_cast<size_t>(g.size()));
  std::map<int64_t, int> all_reduces, optimizer_steps;
  double earliest = 1e300;
  for (const json::Value& e : doc.at("traceEvents").as_array()) {
    if (e.at("ph").as_string() != "X") continue;
    const int64_t rank = e.at("pid").as_int();
    const std::string& thread = threads[{rank, e.at("tid").as_int()}];
    earliest = std::min(earliest, e.at("ts").as_double());
    if (e.at("name").as_string() == "optimizer step") {
      ++optimizer_steps[rank];
      EXPECT_EQ(thread, "main");
    }
    if (e.at("name").as_string() == "all_reduce") {
      ++all_reduces[rank];
      EXPECT_EQ(thread.rfind("communication", 0), 0u) << "an all_reduce on thread '" << thread << "'";
      EXPECT_EQ(e.at("cat").as_string(), "collective");
      const json::Value& args = e.at("args");
      EXPECT_EQ(args.at("kind").as_string(), "all_reduce");
      EXPECT_EQ(args.at("group").as_string(), "world");
      const int64_t bytes = args.at("bytes").as_int();
      EXPECT_TRUE(bytes == 8000 || bytes == 40) << bytes;
    }
  }
  EXPECT_EQ(earliest, 0.0);
  for (int r = 0; r < g.size(); ++r) {
    EXPECT_EQ(processes[r], "rank " + std::to_string(r));
    EXPECT_EQ(all_reduces[r], 2) << "rank " << r;
    EXPECT_EQ(optimizer_steps[r], 1) << "rank " << r;
  }
}

}  // namespace
}  // namespace shardlab::dist
