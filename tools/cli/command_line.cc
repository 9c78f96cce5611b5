// The shardlab command line: `shardlab train CONFIG.yaml`, `shardlab eval ...`, `shardlab generate ...`.
// Every error ends the process with one line naming the culprit and exit code 1. main() is in
// shardlab_main.cc (tests/cli/emulated_main.cc runs the same commands on an emulated device).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "tools/cli/commands.h"

namespace {
constexpr const char* kUsage =
    "usage: shardlab <command> [options]\n"
    "  train CONFIG.yaml                          train as the YAML config says\n"
    "  eval --model DIR --data FILE.jsonl [--dump-logits OUT.safetensors]\n"
    "  generate --model DIR --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
    "  merge --model DIR --adapter DIR --out DIR  fold a PEFT LoRA adapter into its base model\n"
    "  memory CONFIG.yaml [--world-size N] [--presets ...] [--estimate-only] [--verbose]\n"
    "                                             estimated per-rank memory per preset; measured variants (N = 1)\n"
    "  simulate CONFIG.yaml --cluster CLUSTER.yaml [--presets ...] [--world-size N]   predicted step time and memory\n"
    "  simulate --calibrate-comm [--reps R]       (under mpirun) fit alpha/beta to an all-reduce sweep\n"
    "  synth-data --task reverse|add|lookup|mix --n N --seed S [--split all|train|test] --out FILE.jsonl\n"
    "  explain PRESET --world-size N [--hybrid-group-size G] [CONFIG.yaml]   one training step, collective by collective\n"
    "  accuracy CONFIG.yaml|MODEL_DIR --data FILE.jsonl [--adapter DIR] [--limit N]   exact match, greedy\n"
    "  convert SHARDED_DIR --out DIR [--dtype f32|bf16|f16]   sharded checkpoint -> HF model.safetensors\n"
    "  bench CONFIG.yaml --presets ddp,zero1,... [--steps N] [--warmup W] [--bucket-elements N]\n"
    "        [--hybrid-group-size G] [--out DIR] [--trace]\n"
    "                                             sharding presets head-to-head (run under mpirun -np N)\n";
}

int shardlab::cli::run_command_line(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (command == "train") return shardlab::cli::run_train(args);
    if (command == "eval") return shardlab::cli::run_eval(args);
    if (command == "generate") return shardlab::cli::run_generate(args);
    if (command == "merge") return shardlab::cli::run_merge(args);
    if (command == "memory") return shardlab::cli::run_memory(args);
    if (command == "synth-data") return shardlab::cli::run_synth_data(args);
    if (command == "accuracy") return shardlab::cli::run_accuracy(args);
    if (command == "explain") return shardlab::cli::run_explain(args);
    if (command == "convert") return shardlab::cli::run_convert(args);
    if (command == "bench") return shardlab::cli::run_bench(args);
    if (command == "simulate") return shardlab::cli::run_simulate(args);
    std::fprintf(stderr, "shardlab: unknown command '%s'\n%s", command.c_str(), kUsage);
    return 2;
  } catch (const shardlab::Error& e) {
    std::fprintf(stderr, "shardlab %s: error: %s\n", command.c_str(), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shardlab %s: error: %s\n", command.c_str(), e.what());
    return 1;
  }
}
