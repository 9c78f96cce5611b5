// shardlab synth-data --task reverse|add|lookup|mix|LIST --n N --seed S [--split all|train|test]
// --out FILE.jsonl : writes a seeded synthetic instruction data set in Alpaca form (one JSON
// object {instruction, input, output} per line), atomically.
#include <cstdio>

#include "core/atomic_file.h"
#include "core/error.h"
#include "models/synthetic_tasks.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"

namespace shardlab::cli {

int run_synth_data(const std::vector<std::string>& argv) {
  Args args("synth-data", {{"task", true}, {"n", true}, {"seed", true}, {"split", true}, {"out", true}}, argv);
  SL_CHECK(args.positional().empty(), "shardlab synth-data: unexpected argument '", args.positional().front(), "'");
  models::SynthOptions o;
  o.tasks = models::parse_synth_tasks(args.required("task"));
  o.n = args.get_int("n", 0);
  SL_CHECK(args.has("n") && o.n >= 1, "shardlab synth-data: '--n' must be given and >= 1");
  const int64_t seed = args.get_int("seed", 0);
  SL_CHECK(seed >= 0, "shardlab synth-data: '--seed' must be >= 0, got ", seed);
  o.seed = static_cast<uint64_t>(seed);
  o.split = models::parse_synth_split(args.get("split", "all"));
  const std::string out = args.required("out");
  const std::vector<models::SynthExample> examples = models::generate_synthetic(o);
  write_file_atomic(out, models::synth_to_jsonl(examples));
  std::printf("wrote %zu examples (task %s, seed %ld, split %s) to %s\n", examples.size(),
              args.get("task", "").c_str(), static_cast<long>(seed), args.get("split", "all").c_str(), out.c_str());
  return 0;
}

}  // namespace shardlab::cli
