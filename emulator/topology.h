// Topology: a lab described in a YAML file (tools/labs/*.yaml): its nodes
// (namespace, node address, MTU, TAP queues, capture), its links, and the
// impairments coemu applies (this kernel has no netem). Parsed and checked
// whole before anything is built, with errors naming the file, line and key.
//
//   name: lossy                 # lab name, 1..6 of a-z 0-9
//   mtu: 1500                   # bridges, veths and TAPs (default 1500)
//   capture_dir: .              # where `capture: true` writes <lab>-<node>.pcap
//   nodes:
//     alpha: {}                 # key = lab node name = node address
//     beta: {address: beta.r2, mtu: 9000, queues: 2, capture: true,
//            impair: {loss: 1%}}
//   links:
//     - alpha-beta                              # or:
//     - {between: [alpha, beta], impair: {loss: 2%, delay: 80ms, jitter: 10ms}}
//     - {segment: [hub, a, b, c]}               # one Ethernet segment
//
// Impairments are done by the sending node, on everything it sends: a
// node's own `impair`, else that of its impaired link. A node with several
// links cannot take a link's impairment (it would apply to all of them):
// the file must say it on the node.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "emulator/lab.h"

namespace emulator {

struct Topology {
  LabSpec lab;  // what Lab::up builds, with each node's options
  std::string capture_dir = ".";  // absolute after load()

  // Errors: kFailure when the file cannot be read; kInvalidData for YAML
  // syntax, an unknown key, a bad value or a bad topology, with last_error()
  // saying "FILE:LINE: what" (nothing is built).
  [[nodiscard]] static Result<Topology> load(const std::string& path);
  [[nodiscard]] static Result<Topology> parse(std::string_view yaml, const std::string& origin);
};

}  // namespace emulator
