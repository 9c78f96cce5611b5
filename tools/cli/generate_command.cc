// shardlab generate --model DIR --prompt TEXT [--max-new-tokens N] [--temperature T --top-k K
// --top-p P --seed S] : greedy by default, sampling when any sampling option is given.
#include <cstdio>

#include "models/generate.h"
#include "models/llama_io.h"
#include "models/tokenizer.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"

namespace shardlab::cli {

int run_generate(const std::vector<std::string>& argv) {
  Args args("generate", {{"model", true}, {"prompt", true}, {"max-new-tokens", true}, {"temperature", true},
                         {"top-k", true}, {"top-p", true}, {"seed", true}},
            argv);
  const std::string model_dir = args.required("model");
  auto model = models::load_llama(model_dir);
  auto tokenizer = models::load_tokenizer(model_dir);
  models::GenerateOptions o;
  o.max_new_tokens = args.get_int("max-new-tokens", 64);
  o.greedy = !(args.has("temperature") || args.has("top-k") || args.has("top-p") || args.has("seed"));
  o.temperature = args.get_double("temperature", 1.0);
  o.top_k = args.get_int("top-k", 0);
  o.top_p = args.get_double("top-p", 1.0);
  o.seed = static_cast<uint64_t>(args.get_int("seed", 0));
  o.eos_id = tokenizer->eos_id();
  const std::string prompt = args.required("prompt");
  std::vector<int64_t> ids = tokenizer->encode(prompt, tokenizer->add_bos_by_default());
  std::vector<int64_t> out = models::generate(*model, ids, o);
  std::printf("%s%s\n", prompt.c_str(), tokenizer->decode(out, /*skip_special=*/true).c_str());
  return 0;
}

}  // namespace shardlab::cli
