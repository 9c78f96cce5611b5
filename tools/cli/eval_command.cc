// shardlab eval --model DIR --data FILE.jsonl [--dump-logits FILE.safetensors]
// Each line is {"text": ...} (tokenised with the model's tokenizer) or {"input_ids": [...]}; prints
// one JSON line with the mean next-token cross-entropy over all targets and per-sequence means.
#include <cstdio>

#include "autograd/functions.h"
#include "core/atomic_file.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "models/llama_io.h"
#include "models/tokenizer.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"

namespace shardlab::cli {

int run_eval(const std::vector<std::string>& argv) {
  Args args("eval", {{"model", true}, {"data", true}, {"dump-logits", true}}, argv);
  const std::string model_dir = args.required("model"), data_path = args.required("data");
  auto model = models::load_llama(model_dir);
  std::unique_ptr<models::Tokenizer> tokenizer;  // loaded on the first text line
  std::vector<json::Value> lines = json::parse_jsonl(read_file(data_path), data_path);
  SL_CHECK(!lines.empty(), data_path, ": no lines to evaluate");

  NoGradGuard no_grad;
  model->eval();
  double total = 0;
  int64_t targets = 0;
  json::Value per_sequence = json::Value::array();
  std::vector<std::pair<std::string, Tensor>> dumped;
  for (size_t i = 0; i < lines.size(); ++i) {
    json::Ref line(lines[i], data_path + ":" + std::to_string(i + 1));
    std::vector<int64_t> ids;
    if (line.has("input_ids")) {
      for (const json::Value& v : line["input_ids"].as_array()) ids.push_back(v.as_int());
    } else if (line.has("text")) {
      if (!tokenizer) tokenizer = models::load_tokenizer(model_dir);
      ids = tokenizer->encode(line["text"].as_string(), tokenizer->add_bos_by_default());
    } else {
      line.fail("needs a \"text\" or an \"input_ids\" key");
    }
    SL_CHECK(ids.size() >= 2, data_path, ":", i + 1, ": a sequence needs at least 2 tokens to score, got ", ids.size());
    for (int64_t id : ids)
      SL_CHECK(id >= 0 && id < model->config().vocab_size, data_path, ":", i + 1, ": token id ", id,
               " is outside the model's vocabulary of ", model->config().vocab_size);
    Tensor input = Tensor::from_ints(ids, {1, static_cast<int64_t>(ids.size())});
    models::LlamaInputs in{input};
    auto [sum, count] = model->loss_sum(in, input);
    total += sum.item();
    targets += count;
    per_sequence.push_back(sum.item() / static_cast<double>(count));
    if (args.has("dump-logits")) dumped.emplace_back("logits." + std::to_string(i), ops::squeeze(model->logits(in), 0));
  }
  if (!dumped.empty()) save_safetensors(args.get("dump-logits", ""), dumped, {{"source", data_path}});
  json::Value out = json::Value::object();
  out.set("mean_loss", total / static_cast<double>(targets));
  out.set("num_sequences", static_cast<int64_t>(lines.size()));
  out.set("num_target_tokens", targets);
  out.set("per_sequence_loss", per_sequence);
  std::printf("%s\n", json::dump(out).c_str());
  return 0;
}

}  // namespace shardlab::cli
