// flowless - the command-line program: synth, train, detect, eval, plot, info, demo, bench.
//
// Every subcommand is a thin layer over the library; errors are printed as
// "flowless <cmd>: <message>" with exit code 1 (2 for bad usage).
#include <CLI/CLI.hpp>

#include <dirent.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "commands.hpp"

using namespace flowless;

int main(int argc, char** argv) {
  CLI::App app{"flowless: temporal action detection without optical flow at inference"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "flowless 0.1.0");
  cli::Commands cmds;
  cmds.add_all(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return cmds.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flowless %s: %s\n", cmds.active().c_str(), e.what());
    return 1;
  }
}
