// Lab: builds and removes a topology of nodes for coemu: one network namespace
// per node holding a bridge and a persistent TAP (the node's NIC), and a veth
// pair per link joining two nodes' bridges.
//
//   LabSpec s{.name = "demo", .nodes = {"a", "b"}, .links = {{"a", "b"}}};
//   auto lab = Lab::up(s);                    // rolls back fully on failure
//   TapOptions o{.name = (*lab)->node("a")->tap, .netns = ..., .attach = true};
//   (*lab)->down();                           // or let the destructor do it
//   Lab::down("demo");                        // after a crash: from the state file
//
// Names: namespaces "coe-<lab>-<node>", devices "coe<lab>b<i>" (bridge),
// "coe<lab>t<i>" (TAP), "coe<lab>v<i>-<j>" (veth from node i to node j). All
// devices live inside the lab's namespaces, so removing the namespaces removes
// everything, and nothing is ever created in the caller's namespace. The state
// file (state_dir/<lab>.json) is written before the first object is made, so
// `down` finds what a killed process left.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "emulator/netns.h"

namespace emulator {

// What a node of a lab runs with, beyond its name (kept in the state file
// for the commands that run the node: `coemu listen --lab L --node N`).
struct LabNodeOptions {
  std::string address = {};  // node address (default: the node's name)
  uint32_t mtu = 0;          // of its TAP; 0 = the lab's
  uint32_t queues = 1;       // TAP queues (1..16)
  std::string impair = {};   // impairment spec of what it sends ("" = none)
  std::string pcap = {};     // where it records its frames ("" = nowhere)
  // SAPs a `coemu listen` run by `lab up` answers on for this node (none:
  // no process is started for it), and how (accept, echo, sink, reject).
  std::vector<std::string> listen = {};
  std::string listen_mode = {};
  std::string listen_user = {};  // whom that listener runs as (--user; "" = root)
  friend bool operator==(const LabNodeOptions&, const LabNodeOptions&) = default;
};

struct LabSpec {
  std::string name = {};           // [a-z0-9]{1,6}
  std::vector<std::string> nodes = {};  // [a-z0-9]{1,16} each, 1..99 nodes
  // Pairs of node names. Bridges here run no STP, so the links must form a
  // forest (no loops), or broadcasts would circle for ever.
  std::vector<std::pair<std::string, std::string>> links = {};
  uint32_t mtu = 1500;             // of TAPs, bridges and veths (68..65535)
  // Per node, in the order of `nodes` (empty: defaults for all). Bridges and
  // veths take the largest MTU of the lab, so a node's smaller TAP MTU is
  // where frames too big for it are dropped, as on a real segment.
  std::vector<LabNodeOptions> node_options = {};
};

struct LabOptions {
  std::string state_dir = "/run/coemu/labs";
  // Test hook: the creation step with this index fails as if the kernel had
  // refused it (-1 = none). Lets tests prove that rollback leaves nothing.
  int fail_at_step = -1;
};

struct LabNode {
  std::string name;    // node name from the spec
  std::string netns;   // namespace name in /run/netns
  std::string bridge;  // bridge inside the namespace
  std::string tap;     // persistent TAP inside the namespace, enslaved to the bridge
  LabNodeOptions options = {};  // address filled in (the name when not given)
};

// A node as the state file and `coemu lab status --json` show it.
void to_json(nlohmann::json& j, const LabNode& n);

// What the state file of a lab that is up says.
struct LabState {
  std::string name;
  uint32_t mtu = 1500;
  std::vector<LabNode> nodes;
  std::vector<std::pair<std::string, std::string>> links;
  std::vector<std::pair<std::string, int>> daemons;  // node, pid of its `coemu listen`
  [[nodiscard]] const LabNode* node(std::string_view name) const noexcept;
};

class Lab {
 public:
  // Builds the lab. Errors: kInvalidData for a bad spec (last_error() names the
  // bad name, link or loop); kNotAccepted when a lab of that name is up; any
  // kernel error from a step, after everything made so far is removed.
  [[nodiscard]] static Result<std::unique_ptr<Lab>> up(const LabSpec& spec,
                                                       const LabOptions& opts = {});
  // Removes a lab by name: what its state file lists plus any namespace with
  // its prefix (so it also cleans up after a crash with no state file).
  // Removing a lab that is not there is success.
  [[nodiscard]] static Result<void> down(std::string_view lab_name, const LabOptions& opts = {});
  // Names of labs with a state file in opts.state_dir.
  [[nodiscard]] static std::vector<std::string> list(const LabOptions& opts = {});
  // A lab that is up, from its state file. Errors: kFailure when there is
  // no such lab, kInvalidData when its state file is damaged (last_error()
  // says which).
  [[nodiscard]] static Result<LabState> read(std::string_view lab_name, const LabOptions& opts = {});
  // Notes in the state file a process run for one of the lab's nodes, which
  // `down` stops (SIGTERM, then SIGKILL) before it removes the namespaces.
  [[nodiscard]] static Result<void> add_daemon(std::string_view lab_name, const std::string& node, int pid,
                                               const LabOptions& opts = {});
  // Where the lab keeps its nodes' control sockets and daemon logs.
  [[nodiscard]] static std::string run_dir(std::string_view lab_name, const LabOptions& opts = {});

  // Removes this lab (idempotent). The destructor does it unless release()d.
  [[nodiscard]] Result<void> down();
  // Leaves the lab up when this object dies (`coemu lab up` then exits).
  void release() noexcept { released_ = true; }
  ~Lab();

  [[nodiscard]] const std::string& name() const noexcept { return spec_.name; }
  [[nodiscard]] const std::vector<LabNode>& nodes() const noexcept { return nodes_; }
  [[nodiscard]] const LabNode* node(std::string_view name) const noexcept;
  [[nodiscard]] std::string state_file() const;

  // kFailure, with last_error() saying what is missing, when this process
  // cannot build labs (no /dev/net/tun access, no write access to /run).
  [[nodiscard]] static Result<void> check_privileges();

  // Checks a spec without touching the system (kInvalidData + last_error()).
  [[nodiscard]] static Result<void> validate(const LabSpec& spec);

 private:
  Lab(LabSpec spec, LabOptions opts) : spec_(std::move(spec)), opts_(std::move(opts)) {}
  Result<void> build();
  Result<void> step(const char* what);

  LabSpec spec_;
  LabOptions opts_;
  std::vector<LabNode> nodes_;
  int steps_ = 0;
  bool released_ = false;
  bool down_ = false;
};

}  // namespace emulator
