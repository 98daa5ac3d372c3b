// `coemu bench`: the suites (datapath, latency, calls, scale, all), their
// options, and one report per run (table or JSON, optional plot).
#pragma once

#include <CLI/CLI.hpp>

#include "tools/bench_calls.h"
#include "tools/bench_datapath.h"
#include "tools/bench_scale.h"

namespace tools {

struct BenchCommand {
  BenchDatapathOptions datapath;
  BenchLatencyOptions latency;
  BenchCallsOptions calls;
  BenchScaleOptions scale;
  bool json = false;
  std::string plot;
  CLI::App* cmd = nullptr;
  CLI::App *datapath_cmd = nullptr, *latency_cmd = nullptr, *calls_cmd = nullptr, *scale_cmd = nullptr,
           *all_cmd = nullptr;
};

// Registers `bench` and its suites on app.
void add_bench_command(CLI::App& app, BenchCommand& b);
// Runs the suite that was parsed; the exit code.
int run_bench(BenchCommand& b);

}  // namespace tools
