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

// `shardlab <command> [options]`: dispatches to the above, prints usage or the error line.
int run_command_line(int argc, char** argv);

}  // namespace shardlab::cli
