// Fuzzes the train config reader (yaml-cpp underneath): any text either fails with shardlab::Error
// (never a yaml-cpp or std exception) or gives a TrainConfig whose resolved YAML parses back equal.
#include <string>

#include "core/error.h"
#include "tests/fuzz/fuzz_common.h"
#include "tools/config/train_config.h"

namespace config = shardlab::config;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  config::TrainConfig cfg;
  try {
    cfg = config::parse_train_config(text, "fuzz.yaml");
  } catch (const shardlab::Error& e) {
    shardlab::fuzz::rejected(e);
    return 0;
  }
  const std::string yaml = config::resolved_config_yaml(cfg, "fuzz.yaml");
  try {
    FUZZ_ASSERT(config::parse_train_config(yaml, "resolved.yaml") == cfg,
                "resolved YAML parses to a different config:\n%s", yaml.c_str());
  } catch (const shardlab::Error& e) {
    FUZZ_ASSERT(false, "resolved YAML does not parse: %s\n%s", e.what(), yaml.c_str());
  }
  for (const config::RuntimeCaps caps : {config::RuntimeCaps{}, config::RuntimeCaps{true, true, true}}) {
    try {
      (void)config::resolve_auto(cfg, caps);
    } catch (const shardlab::Error&) {
    }
  }
  return 0;
}
