// Internal to tools/config: the adapter keys of a train config (adapter, lora_*, load_in_4bit,
// bnb_4bit_*) and the checks across them.
#pragma once

#include "tools/config/config_reader.h"
#include "tools/config/train_config.h"

namespace shardlab::config::detail {

// Reads the adapter keys of the top-level section. An empty value ("", [], nothing) means "not
// set", as Axolotl's example configs write them. Errors name the key (see train_config.h).
AdapterConfig parse_adapter(const Reader& rd, const Section& top);

}  // namespace shardlab::config::detail
