// emporium-loadgen: the `emporium loadgen` command as a small binary of its own, for driving a
// remote server (or benchmarking) without building the whole platform.
#include "CLI/CLI.hpp"
#include "tools/loadgen/cli.h"

int main(int argc, char** argv) {
  CLI::App app{"Emporium load generator"};
  app.require_subcommand(1);
  emporium::loadgen::LoadgenFlags flags;
  emporium::loadgen::AddLoadgenCommand(app, flags);
  CLI11_PARSE(app, argc, argv);
  return emporium::loadgen::RunLoadgen(flags);
}
