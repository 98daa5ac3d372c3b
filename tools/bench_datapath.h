// `coemu bench datapath` and `latency`: two data paths move DATA frames on a
// PVC, over the memory wire and over two TAPs on a bridge, each case beside
// its raw baseline on the identical path measured in the same run.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "emulator/link.h"
#include "emulator/netns.h"
#include "tools/bench_report.h"

namespace tools {

struct BenchDatapathOptions {
  double seconds = 1.0;                      // per throughput case
  std::vector<uint32_t> sizes = {64, 1500, 65000};  // payload bytes (65000 runs on a jumbo MTU)
  std::string links = "both";                // memory, tap or both
  uint32_t repeat = 3;                       // raw and engine alternate this often; medians are reported
  bool busy_poll = false;
  uint32_t poll_us = 50;                     // DataPathOptions::poll_window
  uint32_t shape_rate = 10'000'000;          // token rate of the shaped-VC case, bytes/s
  bool inline_tx = false;
  bool uring_rx = false;
};

// Two links joined: the memory wire, or two TAPs on a bridge inside an
// anonymous namespace of its own (root), gone with the BenchPath.
struct BenchPath {
  std::unique_ptr<emulator::Link> a, b;
  std::optional<emulator::Netns> ns;
};
[[nodiscard]] miniport::Result<BenchPath> make_bench_path(const std::string& kind, uint32_t mtu);

// Two network namespaces joined by a veth pair, 10.99.0.1/24 in `a` and
// 10.99.0.2/24 in `b` (root); gone with the VethPair.
struct VethPair {
  std::optional<emulator::Netns> a, b;
};
[[nodiscard]] miniport::Result<VethPair> make_veth_pair();
inline constexpr uint32_t kVethAddrA = 0x0A630001, kVethAddrB = 0x0A630002;  // host order

// Runs the selected cases into the report. Returns the exit code.
int run_bench_datapath(const BenchDatapathOptions& opts, BenchReport& report);

// `coemu bench latency`: 64-byte ping-pong on a PVC between two data paths,
// blocking and busy-polling, over the memory wire and TAPs, each beside a
// raw loop on the identical path in the same mode; and the TAP path beside
// a UDP ping-pong over a veth between two namespaces.
struct BenchLatencyOptions {
  std::string links = "both";  // memory, tap or both
  uint32_t rounds = 2000;      // round trips per repetition
  uint32_t repeat = 3;
  uint32_t poll_us = 50;
  bool inline_tx = false;  // DataPathOptions::inline_tx
};
int run_bench_latency(const BenchLatencyOptions& opts, BenchReport& report);

}  // namespace tools
