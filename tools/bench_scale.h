// `coemu bench scale`: two nodes (on the memory wire, or TAPs) hold up to N concurrent
// calls. It reports the setup rate of a batch of calls made next to 1,000
// live calls and of the same batch made next to N-batch (the ratio says
// whether cost stays flat as calls grow), the memory each call costs a node
// (the process's resident growth per call per node), and the teardown rate.
#pragma once

#include <cstdint>
#include <string>

#include "tools/bench_report.h"

namespace tools {

struct BenchScaleOptions {
  uint32_t calls = 1'000'000;  // live calls at the top (at most 1,040,000: the VC table's size)
  uint32_t batch = 10'000;     // calls in each timed batch
  uint32_t window = 256;       // calls being set up at once
  uint32_t repeat = 5;         // timed batches (up and down) at each end; medians are reported
  double timeout_s = 900;      // the whole run gives up after this long
  std::string link = "memory"; // memory, or tap (two TAPs on a bridge; root)
};

// Runs the cases into the report. Returns the exit code (1 when calls fail
// or the run times out, 2 for options that do not fit together).
int run_bench_scale(const BenchScaleOptions& o, BenchReport& report);

}  // namespace tools
