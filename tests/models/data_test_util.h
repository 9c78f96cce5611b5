// Shared pieces of the data pipeline tests: the crafted dataset folder, a toy byte encoder
// (one id per character; bos=1, eos=2, pad=0) and an error-message matcher.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/dataset.h"

namespace shardlab::models::testing {

inline std::string data_path(const std::string& name) {
  return std::string(SHARDLAB_SOURCE_DIR) + "/tests/data/datasets/" + name;
}

// Every character is its own id (its byte value, always >= 3 for the text in these tests).
inline std::vector<int64_t> char_ids(std::string_view s) {
  std::vector<int64_t> ids;
  for (unsigned char c : s) ids.push_back(c);
  return ids;
}

inline TextEncoder toy_encoder(bool bos = true, bool eos = true) {
  TextEncoder e;
  e.encode = [](std::string_view s) { return char_ids(s); };
  if (bos) e.bos_id = 1;
  if (eos) e.eos_id = 2;
  e.pad_id = 0;
  return e;
}

// Runs fn, expects shardlab::Error, and returns its message.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected shardlab::Error";
  return {};
}

}  // namespace shardlab::models::testing
