// coemu: the command line. Exit codes: 0 ok, 1 runtime failure, 2 usage error.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <thread>
#include <nlohmann/json.hpp>

#include "emulator/control_socket.h"
#include "emulator/daemon.h"
#include "emulator/lab.h"
#include "emulator/privileges.h"
#include "emulator/topology.h"
#include "emulator/unique_fd.h"
#include "tools/bench_cli.h"
#include "tools/decode.h"
#include "tools/demo.h"
#include "tools/lab_demo.h"
#include "tools/listen_call.h"
#include "tools/show.h"

namespace {

constexpr int kUsage = 2;

// "a-b" -> {"a", "b"}
std::pair<std::string, std::string> split_link(const std::string& s) {
  auto dash = s.find('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 == s.size())
    throw CLI::ValidationError("--link", "expected NODE-NODE, got '" + s + "'");
  return {s.substr(0, dash), s.substr(dash + 1)};
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t c = s.find(',', start);
    out.push_back(s.substr(start, c == std::string::npos ? std::string::npos : c - start));
    if (c == std::string::npos) break;
    start = c + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "coemu - a user-space emulator of a connection-oriented network stack (CoNDIS model).\n"
      "Nodes are miniports on Linux TAP devices (or an in-process memory wire), joined in\n"
      "network-namespace labs."};
  app.set_version_flag("--version", "coemu 0.1.0");
  app.require_subcommand(1);

  tools::DemoOptions demo;
  auto* demo_cmd = app.add_subcommand(
      "demo", "Two nodes exchange verified DATA frames both ways, record a pcap, tear down, summarize.\n"
              "As root: a real lab (2 namespaces, 2 TAPs, bridges, veth). Otherwise: the memory wire.\n"
              "Example: coemu demo --frames 1000 --pcap /tmp/demo.pcap");
  demo_cmd->add_option("-n,--frames", demo.frames, "Frames to send each way")
      ->check(CLI::Range(1u, 10'000'000u))
      ->capture_default_str();
  demo_cmd->add_option("--pcap", demo.pcap, "Where to write node a's trace (nanosecond pcap)")
      ->capture_default_str();
  demo_cmd->add_flag("--memory", demo.force_memory, "Use the memory wire even when a lab could be built");
  demo_cmd->add_flag("-j,--json", demo.json, "Print the summary as one JSON object");

  tools::BenchCommand bench;
  tools::add_bench_command(app, bench);

  tools::ListenOptions listen;
  CLI::App* listen_cmd = nullptr;
  tools::add_listen_command(app, listen, listen_cmd);
  tools::CallOptions call;
  CLI::App* call_cmd = nullptr;
  tools::add_call_command(app, call, call_cmd);

  tools::ShowOptions show;
  CLI::App* show_cmd = nullptr;
  tools::add_show_command(app, show, show_cmd);

  tools::PvcOptions pvc;
  CLI::App* pvc_cmd = nullptr;
  tools::add_pvc_command(app, pvc, pvc_cmd);

  tools::DecodeOptions decode;
  CLI::App* decode_cmd = nullptr;
  tools::add_decode_command(app, decode, decode_cmd);

  auto* lab_cmd = app.add_subcommand("lab", "Build, inspect and remove namespace labs\n"
                                            "Example: coemu lab up l1 --nodes a,b --link a-b && coemu lab down l1");
  lab_cmd->require_subcommand(1);
  emulator::LabOptions lab_opts;
  lab_cmd->add_option("--state-dir", lab_opts.state_dir, "Where lab state files live")->capture_default_str();

  emulator::LabSpec spec;
  std::string nodes_csv;
  std::vector<std::string> links;
  auto* up = lab_cmd->add_subcommand(
      "up",
      "Build a lab from a topology file (YAML: nodes, links, MTU, queues, impairments, capture;\n"
      "see tools/labs/) or from the command line: a namespace per node with a bridge and a\n"
      "persistent TAP, a veth pair per link. Stays up until `coemu lab down NAME`.\n"
      "Examples:\n"
      "  coemu lab up tools/labs/star.yaml\n"
      "  coemu lab up l1 --nodes a,b,c --link a-b --link b-c --mtu 9000");
  up->add_option("lab", spec.name, "A topology file (*.yaml), or a lab name: 1..6 characters a-z, 0-9")->required();
  up->add_option("--nodes", nodes_csv, "Comma-separated node names (a-z, 0-9), without a file");
  up->add_option("--link", links, "A link NODE-NODE (repeatable); links must not form a loop");
  up->add_option("--mtu", spec.mtu, "MTU of TAPs, bridges and veths")->capture_default_str();
  std::string lab_user;
  up->add_option("--user", lab_user,
                 "Run the listeners this starts (nodes with `listen` in the file) as this user once\n"
                 "set up, as `coemu listen --user` does; a node's `listen: {user: ...}` wins");

  std::string down_name;
  auto* down = lab_cmd->add_subcommand("down", "Remove a lab, also one whose owner crashed (idempotent)\n"
                                               "Example: coemu lab down l1");
  down->add_option("name", down_name, "Lab name")->required();

  tools::LabDemoOptions lab_demo;
  CLI::App* lab_demo_cmd = nullptr;
  tools::add_lab_demo_command(*lab_cmd, lab_demo, lab_demo_cmd);

  bool status_json = false;
  auto* status = lab_cmd->add_subcommand(
      "status", "Show the labs that are up: their nodes (namespace, TAP, address, impairment, capture)\n"
                "and links.\nExample: coemu lab status --json");
  status->add_flag("-j,--json", status_json, "JSON output");

  // CLI11 would only say that a subcommand is required; name the word.
  auto known = [&](const char* word) {
    for (const CLI::App* sc : app.get_subcommands({}))
      if (sc->get_name() == word) return true;
    return false;
  };
  if (argc > 1 && argv[1][0] != '-' && !known(argv[1])) {
    fmt::print(stderr, "coemu: unknown command '{}' (commands: demo, listen, call, show, pvc, decode, lab, bench; see --help)\n",
               argv[1]);
    return kUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    // --help and --version are successes; every other parse error is usage.
    return rc == 0 ? 0 : kUsage;
  }

  if (*demo_cmd) return tools::run_demo(demo);
  if (*bench.cmd) return tools::run_bench(bench);
  if (*listen_cmd) return tools::run_listen(listen);
  if (*call_cmd) return tools::run_call(call);
  if (*decode_cmd) return tools::run_decode(decode);
  if (*show_cmd) return tools::run_show(show);
  if (*pvc_cmd) return tools::run_pvc(pvc);
  if (*lab_demo_cmd) return tools::run_lab_demo(lab_demo);

  if (*up) {
    const bool from_file = spec.name.ends_with(".yaml") || spec.name.ends_with(".yml") ||
                           spec.name.find('/') != std::string::npos;
    if (from_file) {
      if (!nodes_csv.empty() || !links.empty()) {
        fmt::print(stderr, "coemu: lab up {}: the file says the nodes and links; drop --nodes/--link\n", spec.name);
        return kUsage;
      }
      auto topo = emulator::Topology::load(spec.name);
      if (!topo) {
        fmt::print(stderr, "coemu: {}\n", emulator::last_error());
        return topo.error() == miniport::Status::kInvalidData ? kUsage : 1;
      }
      spec = topo->lab;
    } else {
      if (nodes_csv.empty()) {
        fmt::print(stderr, "coemu: lab up {}: --nodes is required without a topology file\n", spec.name);
        return kUsage;
      }
      spec.nodes = split_commas(nodes_csv);
      try {
        for (const auto& l : links) spec.links.push_back(split_link(l));
      } catch (const CLI::ValidationError& e) {
        fmt::print(stderr, "coemu: {}\n", e.what());
        return kUsage;
      }
    }
    if (auto v = emulator::Lab::validate(spec); !v) {
      fmt::print(stderr, "coemu: {}\n", emulator::last_error());
      return kUsage;
    }
    // Who each listener runs as is settled before anything is built.
    bool listens = false;
    for (auto& o : spec.node_options) {
      if (o.listen.empty()) continue;
      listens = true;
      if (o.listen_user.empty()) o.listen_user = lab_user;
      if (o.listen_user.empty()) continue;
      if (auto who = emulator::lookup_user(o.listen_user); !who) {
        fmt::print(stderr, "coemu: lab up {}: user '{}': {}\n", spec.name, o.listen_user, emulator::last_error());
        return kUsage;
      }
    }
    if (!lab_user.empty() && !listens) {
      fmt::print(stderr, "coemu: lab up {}: --user '{}': no node listens (give nodes `listen` in a topology file)\n",
                 spec.name, lab_user);
      return kUsage;
    }
    auto lab = emulator::Lab::up(spec, lab_opts);
    if (!lab) {
      fmt::print(stderr, "coemu: lab {} not built: {} ({}); nothing was left behind\n", spec.name,
                 emulator::last_error(), miniport::to_string(lab.error()));
      return 1;
    }
    // Nodes that listen get a `coemu listen` each, in the background; `lab
    // down` stops them. The lab counts as up once each one is ready.
    std::error_code ec;
    const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    for (const auto& n : (*lab)->nodes()) {
      if (n.options.listen.empty()) continue;
      std::vector<std::string> argv{self, "listen", "--lab", spec.name, "--node", n.name, "--mode", n.options.listen_mode};
      for (const auto& sap : n.options.listen) argv.insert(argv.end(), {"--sap", sap});
      if (!n.options.listen_user.empty()) argv.insert(argv.end(), {"--user", n.options.listen_user});
      const std::string dir = emulator::Lab::run_dir(spec.name, lab_opts);
      std::filesystem::create_directories(dir, ec);
      const std::string log = dir + "/" + n.name + ".log";
      auto pid = emulator::spawn_daemon(argv, log);
      bool up = pid && emulator::Lab::add_daemon(spec.name, n.name, *pid, lab_opts).has_value();
      // Ready means every SAP is registered: a listener whose second SAP
      // fails answers its socket for a moment before it exits.
      for (int i = 0; up && i < 250; ++i) {
        auto a = emulator::ControlSocket::ask(tools::control_path(spec.name, n.name, ""), "ready",
                                              std::chrono::milliseconds(200));
        const auto j = a ? nlohmann::json::parse(*a, nullptr, false) : nlohmann::json();
        if (j.is_object() && j.value("ready", false)) break;
        if (i == 249 || !emulator::daemon_alive(*pid, {"listen", "--lab", spec.name, n.name})) up = false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (!up) {
        std::ifstream f(log);
        std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        fmt::print(stderr, "coemu: lab {}: node {} did not start listening{}\n{}", spec.name, n.name,
                   pid ? "" : ": " + emulator::last_error(), text);
        (void)(*lab)->down();
        fmt::print(stderr, "coemu: lab {} removed\n", spec.name);
        return 1;
      }
    }
    (*lab)->release();
    for (const auto& n : (*lab)->nodes())
      fmt::print("{}: netns {}, bridge {}, tap {}{}{}{}\n", n.name, n.netns, n.bridge, n.tap,
                 n.options.impair.empty() ? "" : ", impair " + n.options.impair,
                 n.options.pcap.empty() ? "" : ", capture " + n.options.pcap,
                 n.options.listen.empty()
                     ? ""
                     : ", listening (" + n.options.listen_mode +
                           (n.options.listen_user.empty() ? "" : ", as " + n.options.listen_user) + ")");
    fmt::print("lab {} is up; run a node with: coemu listen --lab {} --node {}; remove it with: coemu lab down {}\n",
               spec.name, spec.name, spec.nodes.back(), spec.name);
    return 0;
  }
  if (*down) {
    if (auto r = emulator::Lab::down(down_name, lab_opts); !r) {
      fmt::print(stderr, "coemu: lab {}: {}\n", down_name, emulator::last_error());
      return r.error() == miniport::Status::kInvalidData ? kUsage : 1;
    }
    fmt::print("lab {} is down\n", down_name);
    return 0;
  }
  if (*status) {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& name : emulator::Lab::list(lab_opts)) {
      auto st = emulator::Lab::read(name, lab_opts);
      if (!st) {
        fmt::print(stderr, "coemu: lab {}: {}\n", name, emulator::last_error());
        continue;
      }
      nlohmann::json j{{"lab", name}, {"mtu", st->mtu}, {"nodes", nlohmann::json::array()}, {"links", st->links}};
      // A node run as this lab's (listen/call --lab) answers on its control socket.
      std::vector<std::string> running;
      for (const auto& n : st->nodes) {
        nlohmann::json e = n;
        e["running"] = false;
        auto snap = emulator::ControlSocket::ask(tools::control_path(name, n.name, ""), "snapshot",
                                                 std::chrono::milliseconds(500));
        const auto js = snap ? nlohmann::json::parse(*snap, nullptr, false) : nlohmann::json();
        if (js.is_object() && js.contains("calls")) {
          e["running"] = true;
          e["calls"] = js["calls"].size();
          e["peers"] = js["peers"].size();
        }
        running.push_back(e["running"].get<bool>()
                              ? fmt::format(" running: {} call{}, {} peer{}", e["calls"].get<size_t>(),
                                            e["calls"].get<size_t>() == 1 ? "" : "s", e["peers"].get<size_t>(),
                                            e["peers"].get<size_t>() == 1 ? "" : "s")
                              : " not running");
        j["nodes"].push_back(e);
      }
      all.push_back(j);
      if (status_json) continue;
      fmt::print("lab {} (MTU {})\n", name, st->mtu);
      for (size_t i = 0; i < st->nodes.size(); ++i) {
        const auto& n = st->nodes[i];
        fmt::print("  node {:<8} address {:<10} netns {} tap {}{}{}{}\n           {}\n", n.name, n.options.address,
                   n.netns, n.tap, n.options.mtu != st->mtu ? fmt::format(" mtu {}", n.options.mtu) : "",
                   n.options.impair.empty() ? "" : " impair " + n.options.impair,
                   n.options.pcap.empty() ? "" : " capture " + n.options.pcap, running[i]);
      }
      for (const auto& [a, b] : st->links) fmt::print("  link {}-{}\n", a, b);
    }
    if (status_json) fmt::print("{}\n", all.dump());
    else if (all.empty()) fmt::print("no labs\n");
    return 0;
  }
  return kUsage;
}
