// Helpers shared by the libFuzzer targets: an invariant check that aborts (so libFuzzer saves the
// input as a crash), and in-memory files for parsers that only take a path.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

// A violated invariant is a bug in the parser, not bad input: abort so the input is kept.
#define FUZZ_ASSERT(cond, ...)                                                        \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "FUZZ_ASSERT failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                              \
      std::fputc('\n', stderr);                                                       \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

namespace shardlab::fuzz {

// With SHARDLAB_FUZZ_VERBOSE=1 in the environment, prints why an input was rejected: handy when
// checking that seeds get past the first checks (run the target on the seed files).
inline void rejected(const std::exception& e) {
  static const bool verbose = std::getenv("SHARDLAB_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "rejected: %s\n", e.what());
}

// An anonymous memory file holding `size` bytes, reachable by path as /proc/self/fd/N; closed
// (and so freed) by the destructor. Nothing touches the disk and nothing is left behind.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = ::memfd_create("fuzz", MFD_CLOEXEC);
    if (fd_ < 0) std::abort();
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace shardlab::fuzz
