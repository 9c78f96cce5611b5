// The shardlab subcommands; each returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace shardlab::cli {

int run_train(const std::vector<std::string>& args);
int run_eval(const std::vector<std::string>& args);
int run_merge(const std::vector<std::string>& args);
int run_generate(const std::vector<std::string>& args);
int run_memory(const std::vector<std::string>& args);
int run_synth_data(const std::vector<std::string>& args);
int run_accuracy(const std::vector<std::string>& args);
int run_explain(const std::vector<std::string>& args);
int run_convert(const std::vector<std::string>& args);
int run_bench(const std::vector<std::string>& args);
int run_simulate(const std::vector<std::string>& args);

}  // namespace shardlab::cli
