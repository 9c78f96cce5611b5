// Helpers the train-config tests share: the committed example configs, catching the message a
// config load fails with, and EXPECT_CONTAINS for "one line containing this text".
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "tools/config/train_config.h"

namespace shardlab::config {

// A config under tests/data/configs/.
inline std::string config_path(const std::string& name) {
  return std::string(SHARDLAB_SOURCE_DIR) + "/tests/data/configs/" + name;
}

// Runs f and returns the message of the shardlab::Error it throws, or "(no error)" (which no
// expected message contains, so the test fails naming what happened).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// The error parsing yaml as "inline.yaml" gives.
inline std::string text_error(const std::string& yaml) {
  return error_of([&] { parse_train_config(yaml, "inline.yaml"); });
}

}  // namespace shardlab::config

// A config error is one line: text contains part and no newline.
#define EXPECT_CONTAINS(text, part)                                              \
  do {                                                                           \
    const std::string text_ = (text);                                            \
    EXPECT_NE(text_.find(part), std::string::npos) << "got: " << text_;          \
    EXPECT_EQ(text_.find('\n'), std::string::npos) << "not one line: " << text_; \
  } while (0)
