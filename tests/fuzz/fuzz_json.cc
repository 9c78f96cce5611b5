// Fuzzes the JSON parser and writer: any text either fails with shardlab::Error or parses to a value
// whose compact and pretty dumps parse back to an equal value (and dump identically again).
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/json.h"
#include "tests/fuzz/fuzz_common.h"

namespace json = shardlab::json;

namespace {

void check_round_trip(const json::Value& v) {
  const std::string compact = json::dump(v);
  json::Value again;
  try {
    again = json::parse(compact, "<dump>");
  } catch (const shardlab::Error& e) {
    FUZZ_ASSERT(false, "dump() wrote text that does not parse: %s\n%s", e.what(), compact.c_str());
  }
  FUZZ_ASSERT(again == v, "parse(dump(v)) != v; dump: %s", compact.c_str());
  const std::string compact2 = json::dump(again);
  FUZZ_ASSERT(compact2 == compact, "dump is not stable:\n%s\n%s", compact.c_str(), compact2.c_str());

  const std::string pretty = json::dump_pretty(v);
  try {
    FUZZ_ASSERT(json::parse(pretty, "<pretty>") == v, "parse(dump_pretty(v)) != v; dump: %s", pretty.c_str());
  } catch (const shardlab::Error& e) {
    FUZZ_ASSERT(false, "dump_pretty() wrote text that does not parse: %s\n%s", e.what(), pretty.c_str());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    check_round_trip(json::parse(text, "fuzz.json"));
  } catch (const shardlab::Error& e) {
    shardlab::fuzz::rejected(e);
  }
  // The same bytes as JSON Lines: every line that parses must round-trip too.
  try {
    for (const json::Value& v : json::parse_jsonl(text, "fuzz.jsonl")) check_round_trip(v);
  } catch (const shardlab::Error&) {
  }
  return 0;
}
