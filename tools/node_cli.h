// What `coemu listen` and `coemu call` share: the options that place a node
// on a TAP device (attached if it exists, e.g. a lab's, else created and
// brought up, optionally inside a named namespace), starting that node, and
// printing client events as text or JSON lines.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>

#include "emulator/control_socket.h"
#include "emulator/netns.h"
#include "emulator/node.h"
#include "emulator/pcap_recorder.h"
#include "emulator/tap_device.h"

namespace tools {

struct NodeCliOptions {
  std::string lab;       // run as this node of a lab that is up: --lab L --node N
  std::string lab_node;  // (fills address, dev, netns, queues, impair, pcap)
  std::string address;  // node address announced in HELLOs
  std::string dev;      // TAP device
  std::string netns;    // named namespace of the TAP ("" = this one)
  uint32_t queues = 1;  // TAP queues
  uint32_t mtu = 0;     // of a TAP the command creates (0 = the kernel's 1500)
  std::string io = "auto";  // TAP write backend: auto | write | uring
  std::string mac;      // "" = derived from the address
  std::string impair;   // impairment spec for what this node sends
  std::string pcap;     // "" = no capture
  bool json = false;    // events as JSON lines on stdout
  std::string user;     // "" = stay root; else give up root for this user once set up
  // Limits (cm::CmLimits, the data path's pool, the VC table); 0 = no limit.
  cm::CmLimits limits = {};
  uint32_t max_vcs = miniport::kMaxVcs;
  uint32_t pool = emulator::DataPathOptions{}.pool_buffers;
};

// Adds --lab, --node, --address, --dev, --netns, --mtu, --queues, --io,
// --mac, --impair, --pcap, --json and the limit options to cmd.
void add_node_options(CLI::App* cmd, NodeCliOptions& o);

// A started node and everything it runs on; members are destroyed in the
// reverse order (the node stops before its TAP closes).
struct CliNode {
  NodeCliOptions opts;  // as resolved: a lab's node filled in
  std::optional<emulator::Netns> ns;
  std::unique_ptr<emulator::TapDevice> tap;
  std::unique_ptr<emulator::PcapRecorder> pcap;
  std::unique_ptr<emulator::Node> node;
  // Where `coemu show` reads the node; goes first, since it reads the node.
  std::unique_ptr<emulator::ControlSocket> control;
  bool created_tap = false;
  // Requests the command itself answers (e.g. listen's "pvc add"); nullopt
  // passes the request on to the node's snapshot answers.
  std::mutex extra_mu;
  std::function<std::optional<std::string>(const std::string&)> extra;
  // Stops the control socket, lets delayed frames out, stops the node; the
  // command's client may go after this.
  void stop();
  std::string answer(const std::string& request);
  ~CliNode();
};

// Starts the node. On failure prints what and why on stderr and returns the
// exit code (1 runtime, 2 bad option value).
[[nodiscard]] std::variant<std::unique_ptr<CliNode>, int> start_cli_node(const NodeCliOptions& o,
                                                                          const char* cmd);

// The MAC a node started without --mac has: derived from its address, so a
// peer's MAC is known before it runs (a PVC can name it).
[[nodiscard]] miniport::MacAddress derived_mac(const std::string& address);
// A PVC's peer as the command line names it: a MAC; else a node this node
// has heard (its MAC as heard); else a node address (the MAC it derives).
// nullopt when it is none of these.
[[nodiscard]] std::optional<miniport::MacAddress> resolve_peer(emulator::Node& node, const std::string& peer);

// "selector:42", "42", "service:echo", "wildcard" -> SapSpec (PROTOCOL.md 5);
// nullopt when malformed.
[[nodiscard]] std::optional<cm::SapSpec> parse_sap(const std::string& s);
[[nodiscard]] std::string sap_to_string(const cm::SapSpec& sap);

// A VC handle as every command prints it: "slot.gen".
[[nodiscard]] std::string vc_text(miniport::VcId vc);

// One line for an event: readable text, or a JSON object.
[[nodiscard]] std::string describe(const cm::ClientEvent& e, bool json);
// "NOT_ACCEPTED, cause 88 (incompatible destination)"
[[nodiscard]] std::string status_with_cause(miniport::Status s, uint8_t cause);

}  // namespace tools
