#include "tools/node_cli.h"

#include <fmt/core.h>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include <nlohmann/json.hpp>

#include "emulator/lab.h"
#include "emulator/privileges.h"
#include "emulator/route_netlink.h"
#include "tools/show.h"

namespace tools {

using miniport::Status;

constexpr int kUsage = 2;

void add_node_options(CLI::App* cmd, NodeCliOptions& o) {
  cmd->add_option("-l,--lab", o.lab, "Run as a node of this lab (made by `coemu lab up`): its namespace, TAP,\n"
                                     "address, impairment and capture come from the lab; needs --node");
  cmd->add_option("--node", o.lab_node, "Which node of --lab");
  cmd->add_option("-a,--address", o.address, "This node's address (1-32 of A-Z a-z 0-9 . _ -) [lab: the node's]");
  cmd->add_option("-d,--dev", o.dev, "TAP device: attached if it exists (a lab's), else created and brought up");
  cmd->add_option("-n,--netns", o.netns, "Named network namespace the TAP lives in (default: this one)");
  cmd->add_option("--mtu", o.mtu, "MTU of the TAP this command creates (68..65521) [default: 1500]")
      ->check(CLI::Range(68u, 65521u));
  cmd->add_option("--queues", o.queues, "TAP queues, one I/O thread each (1..16) [lab: the node's]")
      ->check(CLI::Range(1u, 16u));
  cmd->add_option("--io", o.io, "How frames are written to the TAP: auto (io_uring where the kernel allows), "
                                "write or uring")
      ->check(CLI::IsMember({"auto", "write", "uring"}))
      ->capture_default_str();
  cmd->add_option("--mac", o.mac, "Node MAC, aa:bb:cc:dd:ee:ff (default: derived from the address)");
  cmd->add_option("--impair", o.impair, "Impair what this node sends, e.g. loss=1%,delay=5ms,seed=7 [lab: the node's]");
  cmd->add_option("--pcap", o.pcap, "Record every frame the node sends and receives (nanosecond pcap) [lab: the node's]");
  cmd->add_flag("-j,--json", o.json, "Events as JSON lines on stdout (logs stay on stderr)");
  cmd->add_option("-u,--user", o.user,
                  "Once the namespace, TAP and node are set up, run on as this user (the TAP is handed to it;\n"
                  "a root process waits to tidy up after it). Needs root");
  // Limits: what one peer or client may take of the node. A SETUP past a
  // peer's limit is refused with cause 47; a client request past its limit
  // answers RESOURCES.
  const char* limits = "Limits (0 = none)";
  cmd->add_option("--max-pending-per-peer", o.limits.pending_per_peer,
                  "Incoming calls from one peer not active yet (offered or awaiting CONNECT_ACK)")
      ->capture_default_str()
      ->group(limits);
  cmd->add_option("--setup-rate", o.limits.setups_per_second,
                  "SETUPs taken from one peer per second (bursts of as many)")
      ->capture_default_str()
      ->group(limits);
  cmd->add_option("--max-calls-per-peer", o.limits.calls_per_peer, "Live calls and parties with one peer")
      ->capture_default_str()
      ->group(limits);
  cmd->add_option("--max-saps-per-client", o.limits.saps_per_client, "SAPs one client holds at once")
      ->capture_default_str()
      ->group(limits);
  cmd->add_option("--max-vcs", o.max_vcs, "VCs the node holds at once, one per call or party (1..1048576)")
      ->check(CLI::Range(1u, miniport::kMaxVcs))
      ->capture_default_str()
      ->group(limits);
  cmd->add_option("--pool", o.pool, "Packet buffers of the data path (512..1048576)")
      ->check(CLI::Range(512u, 1u << 20))
      ->capture_default_str()
      ->group(limits);
}

namespace {

// --lab L --node N: the node's settings from the lab's state file, under
// what the command line says explicitly.
std::variant<NodeCliOptions, int> resolve(const NodeCliOptions& in, const char* cmd) {
  NodeCliOptions o = in;
  if (o.lab.empty()) {
    if (!o.lab_node.empty()) {
      fmt::print(stderr, "coemu {}: --node '{}' needs --lab\n", cmd, o.lab_node);
      return kUsage;
    }
    if (o.address.empty() || o.dev.empty()) {
      fmt::print(stderr, "coemu {}: {} is required (or --lab LAB --node NODE)\n", cmd,
                 o.address.empty() ? "--address" : "--dev");
      return kUsage;
    }
    return o;
  }
  if (!o.dev.empty() || !o.netns.empty()) {
    fmt::print(stderr, "coemu {}: --lab gives the TAP and namespace; drop --dev/--netns\n", cmd);
    return kUsage;
  }
  auto lab = emulator::Lab::read(o.lab);
  if (!lab) {
    fmt::print(stderr, "coemu {}: --lab '{}': {}\n", cmd, o.lab, emulator::last_error());
    return lab.error() == Status::kInvalidData ? kUsage : 1;
  }
  const emulator::LabNode* n = lab->node(o.lab_node);
  if (n == nullptr) {
    std::string names;
    for (const auto& x : lab->nodes) names += (names.empty() ? "" : ", ") + x.name;
    fmt::print(stderr, "coemu {}: --node '{}': lab {} has {}\n", cmd, o.lab_node, o.lab, names);
    return kUsage;
  }
  if (o.mtu != 0) {
    fmt::print(stderr, "coemu {}: --mtu: the lab's TAP has the MTU the lab gave it ({})\n", cmd, n->options.mtu);
    return kUsage;
  }
  if (o.queues != 1 && o.queues != n->options.queues) {
    fmt::print(stderr, "coemu {}: --queues {}: the lab made {}'s TAP with {}\n", cmd, o.queues, n->name,
               n->options.queues);
    return kUsage;
  }
  // One process per node: its TAP is taken. Say so rather than fail on the TAP.
  if (emulator::ControlSocket::ask(control_path(o.lab, o.lab_node, ""), "snapshot", std::chrono::milliseconds(300))) {
    fmt::print(stderr,
               "coemu {}: node {} of lab {} is already running ({}); a node is one process: run this as "
               "another node, or see it with: coemu show calls --lab {} --node {}\n",
               cmd, n->name, o.lab, n->options.listen.empty() ? "another command runs it" : "lab up started its listener",
               o.lab, n->name);
    return 1;
  }
  o.dev = n->tap;
  o.netns = n->netns;
  o.queues = n->options.queues;
  if (o.address.empty()) o.address = n->options.address;
  if (o.impair.empty()) o.impair = n->options.impair;
  if (o.pcap.empty()) o.pcap = n->options.pcap;
  return o;
}

}  // namespace

void CliNode::stop() {
  control.reset();  // its thread reads the node (and the command's client)
  // What an impairment still holds back (delay, rate) leaves before the node
  // stops, or the last RELEASE_COMPLETE of a delayed link would be lost.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (node && tap && tap->next_deadline() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  node.reset();  // joins its threads before the TAP and the recorder go
}

CliNode::~CliNode() {
  stop();
  if (tap) tap->set_recorder(nullptr);
  tap.reset();
  pcap.reset();
}

std::string CliNode::answer(const std::string& request) {
  {
    std::lock_guard lock(extra_mu);
    if (extra)
      if (auto a = extra(request)) return *a;
  }
  return answer_control(*node, request);
}

std::variant<std::unique_ptr<CliNode>, int> start_cli_node(const NodeCliOptions& given, const char* cmd) {
  auto resolved = resolve(given, cmd);
  if (auto* rc = std::get_if<int>(&resolved)) return *rc;
  auto n = std::make_unique<CliNode>();
  n->opts = std::get<NodeCliOptions>(resolved);
  const NodeCliOptions& o = n->opts;
  miniport::MacAddress mac;
  if (o.mac.empty()) {
    mac = derived_mac(o.address);
  } else if (auto m = miniport::MacAddress::parse(o.mac); m && !m->is_multicast()) {
    mac = *m;
  } else {
    fmt::print(stderr, "coemu {}: --mac '{}': expected a unicast aa:bb:cc:dd:ee:ff\n", cmd, o.mac);
    return kUsage;
  }
  std::optional<emulator::ImpairmentConfig> impair;
  if (!o.impair.empty()) {
    auto c = emulator::ImpairmentConfig::parse(o.impair);
    if (!c) {
      fmt::print(stderr, "coemu {}: --impair '{}': {}\n", cmd, o.impair, emulator::last_error());
      return kUsage;
    }
    impair = *c;
  }
  std::optional<emulator::UserIds> user;
  if (!o.user.empty()) {
    auto who = emulator::lookup_user(o.user);
    if (!who) {
      fmt::print(stderr, "coemu {}: --user '{}': {}\n", cmd, o.user, emulator::last_error());
      return kUsage;
    }
    if (::geteuid() != 0) {
      fmt::print(stderr, "coemu {}: --user '{}': only root can become another user\n", cmd, o.user);
      return kUsage;
    }
    user = *who;
    // The node's control socket lives in a directory of root's: the user
    // cannot remove it, so a root process outlives the node to do it.
    const std::string sock = control_path(o.lab, o.lab_node, o.address);
    if (!emulator::watch_from_root([sock] {
          if (!emulator::ControlSocket::ask(sock, "snapshot", std::chrono::milliseconds(200))) ::unlink(sock.c_str());
        })) {
      fmt::print(stderr, "coemu {}: --user: {}\n", cmd, emulator::last_error());
      return 1;
    }
  }
  if (!o.netns.empty()) {
    auto ns = emulator::Netns::open(o.netns);
    if (!ns) {
      fmt::print(stderr, "coemu {}: --netns '{}': {}\n", cmd, o.netns, emulator::last_error());
      return ns.error() == Status::kInvalidAddress ? kUsage : 1;
    }
    n->ns = std::move(*ns);
  }
  const emulator::Netns* where = n->ns ? &*n->ns : nullptr;
  const emulator::TapIo io = o.io == "write"   ? emulator::TapIo::kWrite
                            : o.io == "uring" ? emulator::TapIo::kIoUring
                                              : emulator::TapIo::kAuto;
  auto tap = emulator::TapDevice::open({.name = o.dev, .netns = where, .queues = o.queues, .attach = true, .io = io});
  if (tap && o.mtu != 0 && tap->get()->mtu() != o.mtu) {
    fmt::print(stderr, "coemu {}: --mtu {}: {} exists with MTU {}; the MTU is set where a TAP is made\n", cmd,
               o.mtu, o.dev, tap->get()->mtu());
    return kUsage;
  }
  if (!tap && tap.error() == Status::kAdapterRemoved && o.lab.empty()) {
    tap = emulator::TapDevice::open({.name = o.dev, .netns = where, .queues = o.queues, .io = io});
    n->created_tap = static_cast<bool>(tap);
  }
  if (!tap) {
    fmt::print(stderr, "coemu {}: TAP '{}': {} ({})\n", cmd, o.dev, emulator::last_error(),
               miniport::to_string(tap.error()));
    return tap.error() == Status::kInvalidData ? kUsage : 1;
  }
  n->tap = std::move(*tap);
  if (n->created_tap) {
    auto rt = where ? emulator::RouteNetlink::open_in(*where) : emulator::RouteNetlink::open();
    if (!rt || (o.mtu != 0 && (!rt->set_mtu(o.dev, o.mtu) || !n->tap->refresh_mtu())) || !rt->set_up(o.dev, true)) {
      fmt::print(stderr, "coemu {}: cannot bring {} up: {}\n", cmd, o.dev, emulator::last_error());
      return 1;
    }
    fmt::print(stderr, "coemu {}: created TAP {} (removed when this command ends)\n", cmd, o.dev);
  }
  if (impair) {
    if (auto r = n->tap->set_impairment(*impair); !r) {
      fmt::print(stderr, "coemu {}: --impair '{}': {}\n", cmd, o.impair, emulator::last_error());
      return kUsage;
    }
  }
  if (!o.pcap.empty()) {
    // A lab node's capture gathers every command run as that node.
    const bool lab_capture = !o.lab.empty() && given.pcap.empty();
    auto rec = emulator::PcapRecorder::open({.path = o.pcap, .append = lab_capture});
    if (!rec) {
      fmt::print(stderr, "coemu {}: --pcap '{}': {}\n", cmd, o.pcap, emulator::last_error());
      return 1;
    }
    n->pcap = std::move(*rec);
    n->tap->set_recorder(n->pcap.get());
  }
  emulator::NodeConfig cfg{.address = o.address, .mac = mac, .limits = o.limits, .max_vcs = o.max_vcs};
  cfg.data.pool_buffers = o.pool;
  auto node = emulator::Node::start(*n->tap, cfg);
  if (!node) {
    fmt::print(stderr, "coemu {}: --address '{}': {}\n", cmd, o.address, emulator::last_error());
    return node.error() == Status::kInvalidData ? kUsage : 1;
  }
  n->node = std::move(*node);
  fmt::print(stderr, "coemu {}: node {} ({}) on {}{}\n", cmd, o.address, mac.to_string(), o.dev,
             o.netns.empty() ? "" : " in netns " + o.netns);
  const std::string sock = control_path(o.lab, o.lab_node, o.address);
  CliNode* self = n.get();  // the socket goes first in stop(): the node is there while it answers
  auto control = emulator::ControlSocket::open(sock, [self](const std::string& req) { return self->answer(req); });
  if (control) n->control = std::move(*control);
  else  // the node works without it; only `coemu show` cannot reach it
    fmt::print(stderr, "coemu {}: no control socket ({}); `coemu show` will not reach this node\n", cmd,
               emulator::last_error());
  if (user) {
    // What the user keeps: the TAP (its own now), the node's open fds, and
    // its control socket (0600, its own; root may still ask it).
    if (auto r = n->tap->set_owner(user->uid, user->gid); !r) {
      fmt::print(stderr, "coemu {}: --user: {}\n", cmd, emulator::last_error());
      return 1;
    }
    if (n->control && ::chown(sock.c_str(), user->uid, user->gid) != 0) {
      fmt::print(stderr, "coemu {}: --user: chown {}: {}\n", cmd, sock, std::strerror(errno));
      return 1;
    }
    if (auto r = emulator::drop_privileges(*user); !r) {
      fmt::print(stderr, "coemu {}: --user: {}\n", cmd, emulator::last_error());
      return 1;
    }
    fmt::print(stderr, "coemu {}: running as {} (uid {}), no capabilities left\n", cmd, user->name, user->uid);
  }
  return n;
}

miniport::MacAddress derived_mac(const std::string& address) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a of the address: stable across runs
  for (char c : address) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
  return miniport::MacAddress::local(h & 0xFFFFFFFFFFULL);
}

std::string vc_text(miniport::VcId vc) { return fmt::format("{}.{}", vc.slot, vc.gen); }

std::optional<miniport::MacAddress> resolve_peer(emulator::Node& node, const std::string& peer) {
  if (auto mac = miniport::MacAddress::parse(peer)) return mac;
  for (const auto& p : node.snapshot().peers)
    if (p.neighbor.address == peer) return p.neighbor.mac;
  if (cm::valid_node_address(std::span(reinterpret_cast<const uint8_t*>(peer.data()), peer.size())))
    return derived_mac(peer);
  return std::nullopt;
}

std::optional<cm::SapSpec> parse_sap(const std::string& s) {
  auto number = [](std::string_view v) -> std::optional<cm::SapSpec> {
    if (v.empty() || v.size() > 5 || v.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
    const unsigned long n = std::stoul(std::string(v));
    if (n < 1 || n > 65535) return std::nullopt;
    return cm::SapSpec{1, {static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)}};
  };
  if (s == "wildcard" || s == "*") return cm::SapSpec{3, {}};
  if (s.rfind("selector:", 0) == 0) return number(std::string_view(s).substr(9));
  if (s.rfind("service:", 0) == 0) {
    const std::string name = s.substr(8);
    cm::SapSpec spec{2, std::vector<uint8_t>(name.begin(), name.end())};
    if (!cm::valid_sap(cm::SapValue{spec.type, spec.value})) return std::nullopt;
    return spec;
  }
  return number(s);
}

std::string sap_to_string(const cm::SapSpec& sap) {
  switch (sap.type) {
    case 1:
      return sap.value.size() == 2 ? fmt::format("selector:{}", sap.value[0] << 8 | sap.value[1]) : "selector:?";
    case 2:
      return "service:" + std::string(sap.value.begin(), sap.value.end());
    case 3:
      return "wildcard";
    default:
      return fmt::format("type-{}", sap.type);
  }
}

std::string status_with_cause(Status s, uint8_t cause) {
  std::string out(miniport::to_string(s));
  if (cause != 0) {
    const char* name = cm::cause_name(cause);
    out += fmt::format(", cause {} ({})", cause, name ? name : "unknown");
  }
  return out;
}

namespace {

const char* kind_name(cm::ClientEvent::Kind k) {
  using K = cm::ClientEvent::Kind;
  switch (k) {
    case K::kAfRegistered: return "af_registered";
    case K::kOpenAfComplete: return "open_af_complete";
    case K::kCloseAfComplete: return "close_af_complete";
    case K::kNotifyCloseAf: return "notify_close_af";
    case K::kRegisterSapComplete: return "register_sap_complete";
    case K::kIncomingCall: return "incoming_call";
    case K::kMakeCallComplete: return "make_call_complete";
    case K::kCallConnected: return "call_connected";
    case K::kIncomingClose: return "incoming_close";
    case K::kCloseCallComplete: return "close_call_complete";
    case K::kDeregisterSapComplete: return "deregister_sap_complete";
    case K::kNeighborEvent: return "neighbor_event";
    case K::kCreateVc: return "create_vc";
    case K::kDeleteVc: return "delete_vc";
    case K::kLinkStatus: return "link_status";
    case K::kAddPartyComplete: return "add_party_complete";
    case K::kDropPartyComplete: return "drop_party_complete";
    case K::kIncomingDropParty: return "incoming_drop_party";
    case K::kOidRequest: return "oid_request";
    case K::kModifyQosComplete: return "modify_qos_complete";
    case K::kIncomingQosChange: return "incoming_qos_change";
    case K::kVcStatus: return "vc_status";
  }
  return "unknown";
}

}  // namespace

std::string describe(const cm::ClientEvent& e, bool json) {
  using K = cm::ClientEvent::Kind;
  const std::string vc = vc_text(e.vc);
  if (json) {
    nlohmann::json j{{"event", kind_name(e.kind)}, {"status", miniport::to_string(e.status)}};
    if (e.vc.valid()) j["vc"] = vc;
    if (e.cause) {
      j["cause"] = e.cause;
      if (const char* n = cm::cause_name(e.cause)) j["cause_name"] = n;
    }
    if (!e.peer_address.empty()) j["peer"] = e.peer_address;
    if (!e.detail.empty()) j["detail"] = e.detail;
    if (e.kind == cm::ClientEvent::Kind::kLinkStatus) j["link_up"] = e.link_up;
    if (e.party) j["party"] = e.party;
    if (e.multipoint) j["multipoint"] = true;
    if (e.oid) j["oid"] = fmt::format("0x{:08X}", e.oid);
    if (e.kind == cm::ClientEvent::Kind::kVcStatus) {
      j["indication"] = fmt::format("0x{:08X}", e.indication);
      j["errors"] = e.errors;
      j["dropped"] = e.dropped;
    }
    return j.dump();
  }
  switch (e.kind) {
    case K::kIncomingCall: return fmt::format("incoming call from {} on vc {}", e.peer_address, vc);
    case K::kMakeCallComplete:
      return e.status == Status::kSuccess ? fmt::format("call to {} is up on vc {}", e.peer_address, vc)
                                          : fmt::format("call to {} failed: {}", e.peer_address,
                                                        status_with_cause(e.status, e.cause));
    case K::kCallConnected: return fmt::format("call from {} connected on vc {}", e.peer_address, vc);
    case K::kIncomingClose:
      return fmt::format("{} closed the call on vc {}: {}",
                         e.peer_address.empty() ? "the call manager" : e.peer_address,  // a PVC's call
                         vc, status_with_cause(e.status, e.cause));
    case K::kCloseCallComplete: return fmt::format("call on vc {} closed", vc);
    case K::kAfRegistered: return fmt::format("address family 0x{:04x} is offered", e.address_family);
    case K::kNotifyCloseAf: return "the node is closing its address family";
    case K::kCloseAfComplete: return "address family closed";
    case K::kOpenAfComplete: return fmt::format("address family opened: {}", miniport::to_string(e.status));
    case K::kRegisterSapComplete: return fmt::format("SAP registered: {}", miniport::to_string(e.status));
    case K::kDeregisterSapComplete: return "SAP deregistered";
    case K::kCreateVc: return fmt::format("vc {} made for an incoming call", vc);
    case K::kDeleteVc: return fmt::format("vc {} deleted", vc);
    case K::kLinkStatus: return e.link_up ? fmt::format("link up ({} bit/s)", e.speed_bps) : "link down";
    case K::kAddPartyComplete:
      return e.status == Status::kSuccess
                 ? fmt::format("party {} at {} joined the call on vc {}", e.party, e.peer_address, vc)
                 : fmt::format("party {} at {} refused: {}", e.party, e.peer_address,
                               status_with_cause(e.status, e.cause));
    case K::kDropPartyComplete: return fmt::format("party {} dropped", e.party);
    case K::kOidRequest: return fmt::format("the call manager sets OID 0x{:08X}", e.oid);
    case K::kVcStatus:
      return e.indication == static_cast<uint32_t>(miniport::Indication::kVcReceiveError)
                 ? fmt::format("vc {} is losing received frames: no free buffer ({} dropped so far)", vc, e.dropped)
                 : fmt::format("vc {}: status 0x{:08X}", vc, e.indication);
    case K::kIncomingDropParty:
      return fmt::format("party {} at {} left: {}", e.party, e.peer_address, status_with_cause(e.status, e.cause));
    default: return fmt::format("{}: {}{}", kind_name(e.kind), miniport::to_string(e.status),
                                e.detail.empty() ? "" : " " + e.detail);
  }
}

}  // namespace tools
