// Errors: every failure in shardlab is a shardlab::Error whose message names the op or file at
// fault. SL_CHECK/SL_FAIL build the message from any streamable pieces.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace shardlab {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Args>
[[noreturn]] void fail(const char* file, int line, const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  (void)file;
  (void)line;
  throw Error(os.str());
}
}  // namespace detail

}  // namespace shardlab

#define SL_FAIL(...) ::shardlab::detail::fail(__FILE__, __LINE__, __VA_ARGS__)
#define SL_CHECK(cond, ...)                         \
  do {                                              \
    if (!(cond)) SL_FAIL(__VA_ARGS__);              \
  } while (0)
