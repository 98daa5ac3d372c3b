#include "tools/show.h"

#include <fmt/core.h>

#include "cm/sig_codec.h"
#include "emulator/control_socket.h"
#include "tools/qos_spec.h"
#include "tools/units.h"

namespace tools {

namespace {

using Json = nlohmann::ordered_json;
constexpr int kUsage = 2;

std::optional<std::string> node_socket(const std::string& cmd, const std::string& lab, const std::string& lab_node,
                                       const std::string& address, const std::string& socket);

const char* state_name(cm::CallState s) {
  switch (s) {
    case cm::CallState::kNull: return "null";
    case cm::CallState::kCallInitiated: return "call initiated";
    case cm::CallState::kOutgoingProceeding: return "outgoing call proceeding";
    case cm::CallState::kCallPresent: return "call present";
    case cm::CallState::kConnectRequest: return "connect request";
    case cm::CallState::kIncomingProceeding: return "incoming call proceeding";
    case cm::CallState::kActive: return "active";
    case cm::CallState::kReleaseRequest: return "release request";
    case cm::CallState::kReleaseIndication: return "release indication";
  }
  return "?";
}

const char* vc_state_name(miniport::VcState s) {
  switch (s) {
    case miniport::VcState::kInactive: return "inactive";
    case miniport::VcState::kActive: return "active";
    case miniport::VcState::kDeactivating: return "deactivating";
  }
  return "?";
}

const char* sap_state_name(cm::SapState s) {
  switch (s) {
    case cm::SapState::kRegistering: return "registering";
    case cm::SapState::kRegistered: return "registered";
    case cm::SapState::kDeregistering: return "deregistering";
  }
  return "?";
}

Json flow_json(const cm::FlowSpec& f) {
  return Json{{"service", service_name(f.service_type)}, {"token_rate", f.token_rate}, {"bucket", f.bucket},
              {"peak", f.peak}, {"max_sdu", f.max_sdu}};
}

std::string must(const Json& j, const char* key) { return j.contains(key) ? j[key].get<std::string>() : "?"; }

void print_calls(const Json& s) {
  if (s["calls"].empty()) {
    fmt::print("no calls\n");
    return;
  }
  fmt::print("{:<14} {:<12} {:<4} {:<25} {:<7} {:<6} {:<36} {}\n", "CALL", "PEER", "DIR", "STATE", "VC", "PARTY",
             "QOS (transmit)", "TIMERS");
  for (const auto& c : s["calls"]) {
    std::string timers;
    for (const auto& t : c["timers"])
      timers += fmt::format("{}{} {}", timers.empty() ? "" : ", ", t["name"].get<std::string>(),
                            human_ns(t["left_ms"].get<double>() * 1e6));
    const std::string qos = fmt::format("{} {}", c["traffic"]["transmit"]["service"].get<std::string>(),
                                        c["traffic"]["transmit"]["token_rate"].get<uint32_t>()
                                            ? human_bits_per_s(8.0 * c["traffic"]["transmit"]["token_rate"].get<uint32_t>())
                                            : "");
    fmt::print("{:<14} {:<12} {:<4} {:<25} {:<7} {:<6} {:<36} {}\n",
               fmt::format("{}#{}", c["originated"].get<bool>() ? s["address"].get<std::string>() : must(c, "peer"),
                           c["call_ref"].get<uint32_t>()),
               must(c, "peer"), c["originated"].get<bool>() ? "out" : "in", c["state"].get<std::string>(),
               c["vc"].get<std::string>(),
               c["multipoint"].get<bool>() ? std::to_string(c["endpoint"].get<uint16_t>()) : "-", qos,
               timers.empty() ? "-" : timers);
  }
}

void print_saps(const Json& s) {
  if (s["saps"].empty()) {
    fmt::print("no SAPs\n");
    return;
  }
  fmt::print("{:<24} {:<8} {}\n", "SAP", "CLIENT", "STATE");
  for (const auto& x : s["saps"])
    fmt::print("{:<24} {:<8} {}\n", x["sap"].get<std::string>(), x["client"].get<uint64_t>(),
               x["state"].get<std::string>());
}

void print_vcs(const Json& s) {
  if (s["vcs"].empty()) {
    fmt::print("no VCs\n");
    return;
  }
  fmt::print("{:<7} {:<7} {:<13} {:<11} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}\n", "VC", "CLIENT", "STATE", "USE",
             "RX FRAMES", "RX BYTES", "TX FRAMES", "TX BYTES", "RX DROP", "TX REF");
  for (const auto& v : s["vcs"]) {
    std::string use = v["root"].get<bool>() ? fmt::format("root/{}", v["parties"].get<size_t>())
                      : v.contains("pvc")   ? fmt::format("pvc {}", v["pvc"].get<uint32_t>())
                      : v["call"].get<bool>() ? "call"
                                              : "-";
    const auto& c = v["counters"];
    fmt::print("{:<7} {:<7} {:<13} {:<11} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}\n", v["vc"].get<std::string>(),
               v["client"].get<uint64_t>(), v["state"].get<std::string>(), use, c["rx_frames"].get<uint64_t>(),
               human_bytes(c["rx_bytes"].get<double>()), c["tx_frames"].get<uint64_t>(),
               human_bytes(c["tx_bytes"].get<double>()), c["rx_dropped"].get<uint64_t>(),
               c["tx_refused"].get<uint64_t>());
  }
}

void print_peers(const Json& s) {
  if (s["peers"].empty()) {
    fmt::print("no peers heard\n");
    return;
  }
  fmt::print("{:<16} {:<18} {:<11} {:>6} {:>12} {:>10}\n", "ADDRESS", "MAC", "INCARNATION", "MTU", "SPEED", "HEARD");
  for (const auto& p : s["peers"])
    fmt::print("{:<16} {:<18} {:<11} {:>6} {:>12} {:>10}\n", p["address"].get<std::string>(),
               p["mac"].get<std::string>(), p["incarnation"].get<std::string>(),
               p.contains("mtu") ? std::to_string(p["mtu"].get<uint16_t>()) : "-",
               p.contains("link_speed") ? human_bits_per_s(p["link_speed"].get<double>()) : "-",
               human_ns(p["heard_ms_ago"].get<double>() * 1e6) + " ago");
}

void print_stats(const Json& s) {
  for (const char* group : {"signaling", "transport", "impairment"}) {
    fmt::print("{}:\n", group);
    for (const auto& [k, v] : s["stats"][group].items()) fmt::print("  {:<24} {}\n", k, v.dump());
  }
}

}  // namespace

std::string control_path(const std::string& lab, const std::string& lab_node, const std::string& address) {
  if (!lab.empty()) return "/run/coemu/labs/" + lab + "/" + lab_node + ".sock";
  return "/run/coemu/nodes/" + address + ".sock";
}

Json snapshot_json(const emulator::Node::Snapshot& s) {
  Json j{{"address", s.address}, {"mac", s.mac.to_string()}, {"incarnation", fmt::format("0x{:08x}", s.incarnation)},
         {"link_up", s.link_up}, {"mtu", s.mtu}};
  Json calls = Json::array();
  for (const auto& c : s.calls) {
    Json t = Json::array();
    for (const auto& x : c.timers)
      t.push_back({{"name", x.name}, {"left_ms", std::chrono::duration<double, std::milli>(x.left).count()}});
    calls.push_back({{"peer", c.peer_address},
                     {"peer_mac", c.peer.to_string()},
                     {"call_ref", c.call_ref},
                     {"originated", c.originated},
                     {"multipoint", c.multipoint},
                     {"endpoint", c.endpoint},
                     {"party", c.party},
                     {"state", state_name(c.state)},
                     {"vc", vc_text(c.vc)},
                     {"client", c.client},
                     {"traffic", {{"transmit", flow_json(c.traffic.transmit)}, {"receive", flow_json(c.traffic.receive)}}},
                     {"timers", t}});
  }
  j["calls"] = calls;
  Json saps = Json::array();
  for (const auto& x : s.saps)
    saps.push_back({{"sap", sap_to_string(x.spec)}, {"client", x.client}, {"state", sap_state_name(x.state)}});
  j["saps"] = saps;
  Json vcs = Json::array();
  for (const auto& v : s.vcs) {
    Json e{{"vc", vc_text(v.view.vc)},
           {"client", v.view.client},
           {"state", vc_state_name(v.state)},
           {"call", v.view.has_call},
           {"root", v.view.root},
           {"parties", v.view.parties}};
    if (v.view.pvc) e["pvc"] = *v.view.pvc;
    if (!v.view.name.empty()) e["name"] = v.view.name;
    e["counters"] = {{"rx_frames", v.counters.rx_frames}, {"rx_bytes", v.counters.rx_bytes},
                     {"tx_frames", v.counters.tx_frames}, {"tx_bytes", v.counters.tx_bytes},
                     {"rx_dropped", v.counters.rx_dropped}, {"tx_refused", v.counters.tx_refused}};
    vcs.push_back(e);
  }
  j["vcs"] = vcs;
  Json peers = Json::array();
  for (const auto& p : s.peers) {
    Json e{{"address", p.neighbor.address},
           {"mac", p.neighbor.mac.to_string()},
           {"incarnation", fmt::format("0x{:08x}", p.neighbor.incarnation)},
           {"heard_ms_ago", std::chrono::duration<double, std::milli>(p.since_heard).count()}};
    if (p.neighbor.mtu) e["mtu"] = *p.neighbor.mtu;
    if (p.neighbor.link_speed) e["link_speed"] = *p.neighbor.link_speed;
    peers.push_back(e);
  }
  j["peers"] = peers;
  const auto& cmc = s.sig.cm;
  const auto& t = s.sig.transport;
  const auto& im = s.impairment;
  j["stats"] = {
      {"signaling",
       {{"frames_malformed", cmc.frames_malformed}, {"sig_short", cmc.sig_short},
        {"sig_bad_version", cmc.sig_bad_version}, {"sig_bad_kind", cmc.sig_bad_kind},
        {"sig_bad_length", cmc.sig_bad_length}, {"msg_malformed", cmc.msg_malformed},
        {"msg_unknown_type", cmc.msg_unknown_type}, {"msg_bad_ie", cmc.msg_bad_ie},
        {"msg_unknown_call", cmc.msg_unknown_call}, {"msg_wrong_state", cmc.msg_wrong_state},
        {"hellos_dropped", cmc.hellos_dropped},
        {"calls_refused", cmc.calls_refused}, {"setups_limited", cmc.setups_limited},
        {"status_sent", cmc.status_sent},
        {"client_oids_sent", cmc.client_oids_sent}, {"client_oids_completed", cmc.client_oids_completed},
        {"vc_indications", cmc.vc_indications}}},
      {"transport",
       {{"msgs_sent", t.msgs_sent}, {"retransmits", t.retransmits}, {"fast_retransmits", t.fast_retransmits},
        {"acks_sent", t.acks_sent}, {"resets_sent", t.resets_sent}, {"delivered", t.delivered},
        {"duplicates", t.duplicates}, {"out_of_window", t.out_of_window}, {"ack_above_sent", t.ack_above_sent},
        {"dropped_opening", t.dropped_opening}, {"stale_resets", t.stale_resets}}},
      {"impairment",
       {{"frames_in", im.frames_in}, {"frames_out", im.frames_out}, {"dropped_loss", im.dropped_loss},
        {"dropped_queue", im.dropped_queue}, {"duplicated", im.duplicated}, {"corrupted", im.corrupted},
        {"reordered", im.reordered}, {"delayed", im.delayed}, {"faulted", im.faulted}}}};
  return j;
}

std::string answer_control(emulator::Node& node, const std::string& request) {
  if (request == "snapshot") return snapshot_json(node.snapshot()).dump();
  return Json{{"error", "unknown request '" + request + "' (known: snapshot)"}}.dump();
}

void add_show_command(CLI::App& app, ShowOptions& o, CLI::App*& cmd) {
  cmd = app.add_subcommand(
      "show",
      "The live state of a running node (a `coemu listen` or `coemu call`), through its\n"
      "control socket (only root or the node's owner may read it): calls with their state,\n"
      "parties and running timers; SAPs; VCs with their counters; peers heard; statistics.\n"
      "Examples:\n"
      "  coemu show calls --lab pair --node beta\n"
      "  coemu show vcs -a beta --json");
  cmd->add_option("what", o.what, "calls, saps, vcs, peers, stats or all")
      ->check(CLI::IsMember({"calls", "saps", "vcs", "peers", "stats", "all"}))
      ->capture_default_str();
  cmd->add_option("-l,--lab", o.lab, "The node is this lab's (with --node)");
  cmd->add_option("--node", o.lab_node, "Which node of --lab");
  cmd->add_option("-a,--address", o.address, "The node's address (a node run outside a lab)");
  cmd->add_option("--socket", o.socket, "The node's control socket, if elsewhere");
  cmd->add_flag("-j,--json", o.json, "The node's snapshot as JSON (the part asked for; all of it with `all`)");
}

int run_show(const ShowOptions& o) {
  const auto where = node_socket("show", o.lab, o.lab_node, o.address, o.socket);
  if (!where) return kUsage;
  const std::string path = *where;
  auto answer = emulator::ControlSocket::ask(path, "snapshot", std::chrono::seconds(5));
  if (!answer) {
    fmt::print(stderr, "coemu show: {}\n", emulator::last_error());
    return 1;
  }
  const Json s = Json::parse(*answer, nullptr, false);
  if (s.is_discarded() || !s.is_object() || s.contains("error")) {
    fmt::print(stderr, "coemu show: the node at {} answered: {}\n", path, *answer);
    return 1;
  }
  if (o.json) {
    const std::string key = o.what;
    fmt::print("{}\n", o.what == "all" ? s.dump() : s[key].dump());
    return 0;
  }
  fmt::print("node {} ({}), link {}\n", s["address"].get<std::string>(), s["mac"].get<std::string>(),
             s["link_up"].get<bool>() ? "up" : "down");
  if (o.what == "calls" || o.what == "all") print_calls(s);
  if (o.what == "saps" || o.what == "all") print_saps(s);
  if (o.what == "vcs" || o.what == "all") print_vcs(s);
  if (o.what == "peers" || o.what == "all") print_peers(s);
  if (o.what == "stats" || o.what == "all") print_stats(s);
  return 0;
}

namespace {

// The control socket of the node a command names, or a usage error.
std::optional<std::string> node_socket(const std::string& cmd, const std::string& lab, const std::string& lab_node,
                                       const std::string& address, const std::string& socket) {
  if (!socket.empty()) return socket;
  if (!lab.empty() && lab_node.empty()) {
    fmt::print(stderr, "coemu {}: --lab '{}' needs --node\n", cmd, lab);
    return std::nullopt;
  }
  if (lab.empty() && address.empty()) {
    fmt::print(stderr, "coemu {}: which node? --lab L --node N, -a ADDRESS or --socket PATH\n", cmd);
    return std::nullopt;
  }
  return control_path(lab, lab_node, address);
}

}  // namespace

void add_pvc_command(CLI::App& app, PvcOptions& o, CLI::App*& cmd) {
  cmd = app.add_subcommand(
      "pvc",
      "Add or delete a PVC on a running `coemu listen` node (OID_CO_ADD_PVC / OID_CO_DELETE_PVC):\n"
      "the node makes a PERMANENT_VC call on it, no signaling, and answers it as its --mode says;\n"
      "deleting the PVC closes that call. The other end sends with `coemu call --pvc`.\n"
      "Examples:\n"
      "  coemu pvc add --lab pair --node beta --vci 200 --peer-vci 100 --peer alpha\n"
      "  coemu call --lab pair --node alpha --pvc 100:200@beta --count 50 --echo\n"
      "  coemu pvc del --lab pair --node beta --vci 200");
  cmd->add_option("verb", o.verb, "add or del")->required()->check(CLI::IsMember({"add", "del"}));
  cmd->add_option("-l,--lab", o.lab, "The node is this lab's (with --node)");
  cmd->add_option("--node", o.lab_node, "Which node of --lab");
  cmd->add_option("-a,--address", o.address, "The node's address (a node run outside a lab)");
  cmd->add_option("--socket", o.socket, "The node's control socket, if elsewhere");
  cmd->add_option("--vci", o.vci, "The label this node receives on (1..1048575)")
      ->required()
      ->check(CLI::Range(1u, 1048575u));
  cmd->add_option("--peer-vci", o.peer_vci, "add: the label the peer receives on")->check(CLI::Range(1u, 0xFFFFFFFFu));
  cmd->add_option("--peer", o.peer, "add: the peer's node address (heard by this node) or MAC");
  cmd->add_flag("-j,--json", o.json, "The node's answer as JSON");
}

int run_pvc(const PvcOptions& o) {
  const auto path = node_socket("pvc", o.lab, o.lab_node, o.address, o.socket);
  if (!path) return kUsage;
  if (o.verb == "add" && (o.peer_vci == 0 || o.peer.empty())) {
    fmt::print(stderr, "coemu pvc add: --peer-vci and --peer are required\n");
    return kUsage;
  }
  const std::string req = o.verb == "add" ? fmt::format("pvc add {} {} {}", o.vci, o.peer_vci, o.peer)
                                          : fmt::format("pvc del {}", o.vci);
  auto answer = emulator::ControlSocket::ask(*path, req, std::chrono::seconds(10));
  if (!answer) {
    fmt::print(stderr, "coemu pvc: {}\n", emulator::last_error());
    return 1;
  }
  const Json a = Json::parse(*answer, nullptr, false);
  if (!a.is_object() || a.contains("error")) {
    fmt::print(stderr, "coemu pvc {}: {}\n", o.verb,
               a.is_object() && a["error"].is_string() ? a["error"].get<std::string>() : *answer);
    return 1;
  }
  if (o.json) fmt::print("{}\n", a.dump());
  else if (o.verb == "add")
    fmt::print("PVC {} -> {} to {} up on vc {}\n", o.vci, o.peer_vci, a.value("peer", o.peer), a.value("vc", "?"));
  else
    fmt::print("PVC {} deleted\n", o.vci);
  return 0;
}

}  // namespace tools
