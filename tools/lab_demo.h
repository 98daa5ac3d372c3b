// `coemu lab demo`: the whole story in one command (what tools/demo.sh runs).
// Three nodes in namespaces; beta listens on SAP 42 (and echoes), gamma
// listens too; alpha makes a guaranteed-QoS call to beta and streams data,
// then a point-to-multipoint call to beta and gamma, then a call to a SAP
// nobody registered, which is refused with its cause. A summary table
// (calls, rates, latency, drops), a pcap per node and, when tshark is
// installed, the first signaling exchange decoded by the Wireshark
// dissector. Without CAP_NET_ADMIN it runs on the memory wire (two nodes:
// both parties of the point-to-multipoint call are on beta) and says so.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace tools {

struct LabDemoOptions {
  double seconds = 3;                 // of data on the guaranteed call
  std::string pcap_dir = "coemu-demo";  // where alpha.pcap, beta.pcap, gamma.pcap go
  std::string rate = "20M";           // token rate of the guaranteed call, bit/s
  bool memory = false;                // the memory wire even when a lab could be built
  bool json = false;                  // the summary as one JSON object
  std::string dissector;              // tools/wireshark/coemu.lua ("" = next to the sources)
};

void add_lab_demo_command(CLI::App& lab, LabDemoOptions& o, CLI::App*& cmd);
[[nodiscard]] int run_lab_demo(const LabDemoOptions& o);

}  // namespace tools
