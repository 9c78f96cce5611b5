// The shardlab program (tools/cli/command_line.cc has the commands).
#include "tools/cli/commands.h"

int main(int argc, char** argv) { return shardlab::cli::run_command_line(argc, argv); }
