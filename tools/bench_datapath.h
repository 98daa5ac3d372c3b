// `coemu bench datapath`: two nodes move DATA frames on a PVC through the
// engine, over the memory wire and over two TAPs on a bridge, each case beside
// its raw baseline on the identical path measured in the same run.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "emulator/link.h"
#include "emulator/netns.h"

namespace tools {

struct BenchDatapathOptions {
  double seconds = 1.0;                      // per throughput case
  std::vector<uint32_t> sizes = {64, 1500, 65000};  // payload bytes (65000 runs on a jumbo MTU)
  std::string links = "both";                // memory, tap or both
  uint32_t rounds = 2000;                    // ping-pong round trips per latency case
  uint32_t repeat = 3;                       // raw and engine alternate this often; medians are reported
  bool busy_poll = false;
  uint32_t poll_us = 50;                     // DataPathOptions::poll_window
  uint32_t shape_rate = 10'000'000;          // token rate of the shaped-VC case, bytes/s
  bool inline_tx = false;
  bool uring_rx = false;
  bool json = false;
};

// One result row: {"suite","case","unit","value","baseline","ratio"}.
struct BenchRow {
  std::string suite, name, unit;
  double value = 0, baseline = 0;
  double loss = 0, baseline_loss = 0;  // share of frames written but not delivered
  // Each repetition's result (value and baseline are their medians): the
  // row then shows min..max beside them. Empty for single measurements.
  std::vector<double> values = {}, baselines = {};
};

// Two links joined: the memory wire, or two TAPs on a bridge inside an
// anonymous namespace of its own (root), gone with the BenchPath.
struct BenchPath {
  std::unique_ptr<emulator::Link> a, b;
  std::optional<emulator::Netns> ns;
};
[[nodiscard]] miniport::Result<BenchPath> make_bench_path(const std::string& kind, uint32_t mtu);

// The q-quantile (0..1) of samples; 0 when there are none.
[[nodiscard]] double percentile(std::vector<double> samples, double q);

// Prints a row as a table line or one JSON object.
void print_bench_row(const BenchRow& r, bool json);

// Runs the selected cases, printing progress on stderr and the rows on stdout
// (a table, or one JSON object per line). Returns the exit code.
int run_bench_datapath(const BenchDatapathOptions& opts);

}  // namespace tools
