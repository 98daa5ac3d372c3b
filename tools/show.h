// `coemu show calls|saps|vcs|peers|stats`: the live state of a running node
// (any `coemu listen` or `coemu call`), read through its control socket.
// Also what those commands answer on that socket.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "emulator/node.h"
#include "tools/node_cli.h"

namespace tools {

struct ShowOptions {
  std::string what = "calls";  // calls | saps | vcs | peers | stats | all
  std::string lab, lab_node;   // --lab L --node N
  std::string address;         // -a: a node run outside a lab
  std::string socket;          // --socket PATH
  bool json = false;
};

// Where a node's control socket lives: /run/coemu/labs/<lab>/<node>.sock for
// a lab's node, /run/coemu/nodes/<address>.sock otherwise.
[[nodiscard]] std::string control_path(const std::string& lab, const std::string& lab_node,
                                       const std::string& address);

// The whole snapshot as JSON (what the control socket answers "snapshot" with).
[[nodiscard]] nlohmann::ordered_json snapshot_json(const emulator::Node::Snapshot& s);
// The control socket's answer to one request line.
[[nodiscard]] std::string answer_control(emulator::Node& node, const std::string& request);

void add_show_command(CLI::App& app, ShowOptions& o, CLI::App*& cmd);
[[nodiscard]] int run_show(const ShowOptions& o);

// `coemu pvc add|del`: a PVC on a running `coemu listen` node (R68), which
// makes a PERMANENT_VC call on it and answers it as its --mode says.
struct PvcOptions {
  std::string verb;              // add | del
  std::string lab, lab_node, address, socket;
  uint32_t vci = 0;              // the label this node receives on
  uint32_t peer_vci = 0;         // the label the peer receives on (add)
  std::string peer;              // the peer's node address or MAC (add)
  bool json = false;
};
void add_pvc_command(CLI::App& app, PvcOptions& o, CLI::App*& cmd);
[[nodiscard]] int run_pvc(const PvcOptions& o);

}  // namespace tools
