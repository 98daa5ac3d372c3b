// The two-node demo behind `coemu demo` and tools/demo.sh: two nodes (each a
// miniport and a data path) move checked payloads both ways on a PVC over a
// real namespace lab (root) or the memory wire, record node a's traffic to
// pcap, tear everything down and summarize.
#pragma once

#include <cstdint>
#include <string>

namespace tools {

struct DemoOptions {
  uint32_t frames = 2000;        // frames each way
  std::string pcap = "coemu-demo.pcap";
  bool force_memory = false;     // skip the namespace lab even as root
  bool json = false;             // summary as one JSON object on stdout
};

// Runs the demo; returns the process exit code (0 ok, 1 failure). Progress
// goes to stderr, the summary to stdout.
int run_demo(const DemoOptions& opts);

}  // namespace tools
