// Whole-file reads with errors that name the path, and atomic writes: bytes go to
// "<path>.tmp.<pid>" in the same directory, are fsynced, then renamed over the target, so the
// target holds either the old file or the complete new one, never a half-written one.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace shardlab {

// The file's bytes; throws shardlab::Error naming the path (e.g. "cannot open 'x.json': No such
// file or directory").
std::string read_file(const std::string& path);

// Writes `data` to `path` atomically (see AtomicFile).
void write_file_atomic(const std::string& path, std::string_view data);

// Streaming form for large files (checkpoints): write() any number of times, then commit().
// Destroying it without a successful commit() removes the temp file and leaves `path` untouched.
// Every failure throws shardlab::Error naming the target path and the system's reason.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  // fsync, close, rename over the target, fsync the directory so the rename is durable too.
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_; }

 private:
  [[noreturn]] void fail(const char* what, int err);
  void discard() noexcept;

  std::string path_;
  std::string temp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace shardlab
