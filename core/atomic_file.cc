// Atomic writes (temp file + fsync + rename) and whole-file reads, on POSIX file descriptors so
// every failure reports errno for the path at fault.
#include "core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace shardlab {
namespace {

std::string parent_dir(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) SL_FAIL("cannot open '", path, "': ", std::strerror(errno));
  struct stat st;
  int err = ::fstat(fd, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
  if (err != 0) {
    ::close(fd);
    SL_FAIL("cannot read '", path, "': ", std::strerror(err));
  }
  std::string out;
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (true) {
    if (done == out.size()) out.resize(out.size() + 65536);  // the file grew, or st_size was 0 (/proc)
    ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      ::close(fd);
      SL_FAIL("cannot read '", path, "': ", std::strerror(err));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

void write_file_atomic(const std::string& path, std::string_view data) {
  AtomicFile f(path);
  f.write(data);
  f.commit();
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  SL_CHECK(!path_.empty(), "cannot write a file with an empty path");
  temp_ = path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    int err = errno;
    SL_FAIL("cannot write '", path_, "': cannot create '", temp_, "': ", std::strerror(err));
  }
}

AtomicFile::~AtomicFile() {
  if (!committed_) discard();
}

void AtomicFile::discard() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(temp_.c_str());
}

void AtomicFile::fail(const char* what, int err) {
  discard();
  SL_FAIL("cannot write '", path_, "': ", what, ": ", std::strerror(err));
}

void AtomicFile::write(const void* data, size_t n) {
  SL_CHECK(fd_ >= 0 && !committed_, "cannot write '", path_, "': the file was already committed or failed");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) fail("write failed", errno);
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicFile::commit() {
  SL_CHECK(fd_ >= 0 && !committed_, "cannot write '", path_, "': the file was already committed or failed");
  if (::fsync(fd_) != 0) fail("fsync failed", errno);
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("close failed", errno);
  if (::rename(temp_.c_str(), path_.c_str()) != 0) fail("rename failed", errno);
  committed_ = true;
  // Make the rename itself durable; a failure here cannot un-write the file, so it is not fatal.
  int dir = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace shardlab
