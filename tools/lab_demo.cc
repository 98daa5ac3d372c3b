#include "tools/lab_demo.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "emulator/clock.h"
#include "emulator/lab.h"
#include "emulator/mem_link.h"
#include "emulator/netns.h"
#include "emulator/node.h"
#include "emulator/pcap_recorder.h"
#include "emulator/signals.h"
#include "emulator/tap_device.h"
#include "miniport/byte_order.h"
#include "miniport/frame.h"
#include "tools/node_cli.h"
#include "tools/qos_spec.h"
#include "tools/units.h"

#ifndef COEMU_SOURCE_DIR
#define COEMU_SOURCE_DIR "."
#endif

namespace tools {

namespace {

using cm::ClientEvent;
using emulator::Node;
using miniport::Status;
using miniport::VcId;
using Ev = ClientEvent::Kind;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

constexpr auto kAnswer = std::chrono::seconds(10);  // T303 and the transport bound the rest
constexpr uint32_t kPayload = 1000;
const cm::SapSpec kSap42{1, {0, 42}};
const cm::SapSpec kSap99{1, {0, 99}};

uint64_t key(VcId v) { return uint64_t{v.slot} << 32 | v.gen; }

// One client per node: a listener accepts every call on SAP 42 and echoes
// what arrives on point-to-point calls; the caller stamps what it sends
// and times the echoes.
class DemoClient : public emulator::NodeClient {
 public:
  Node* node = nullptr;
  bool listener = false;

  void on_event(const ClientEvent& e) override {
    if (listener && e.kind == Ev::kIncomingCall) {
      {
        std::lock_guard lock(mu_);
        if (e.multipoint) leaf_vcs_.insert(key(e.vc));
      }
      (void)node->incoming_call_complete(e.vc, Status::kSuccess);
    }
    if (e.kind == Ev::kIncomingClose) (void)node->close_call(e.vc);
    if (e.kind == Ev::kIncomingDropParty) (void)node->drop_party(e.party);
    if (e.kind == Ev::kOidRequest) (void)node->oid_request_complete(e.request, Status::kSuccess);
    std::lock_guard lock(mu_);
    events_.push_back(e);
    cv_.notify_all();
  }

  void on_receive(std::span<emulator::RxPacket> pkts) override {
    const int64_t now = emulator::steady_now().count();
    std::lock_guard lock(mu_);
    for (auto& p : pkts) {
      received_ += 1;
      received_bytes_ += p.payload().size();
      if (!listener) {
        if (p.payload().size() >= 4) {
          const uint32_t seq = miniport::load_be32(p.payload().data());
          if (seq < sent_at_.size() && sent_at_[seq] != 0) rtt_ns_.push_back(now - std::exchange(sent_at_[seq], 0));
        }
        continue;
      }
      if (leaf_vcs_.count(key(p.vc()))) continue;  // leaves never send
      emulator::TxPacket tx{node->data().alloc(), 0};
      if (!tx.buf) continue;
      std::memcpy(tx.buf.data() + miniport::kFramePayloadOffset, p.payload().data(), p.payload().size());
      tx.buf.set_size(static_cast<uint32_t>(p.payload().size()));
      (void)node->data().send(p.vc(), std::span(&tx, 1));
    }
    cv_.notify_all();
  }

  void on_send_complete(std::span<const emulator::TxCompletion> done) override {
    std::lock_guard lock(mu_);
    for (const auto& d : done) (d.status == Status::kSuccess ? sent_ok_ : sent_failed_) += 1;
    cv_.notify_all();
  }

  // The n-th event of kind k, waited for.
  std::optional<ClientEvent> wait(Ev k, size_t n = 0) {
    std::unique_lock lock(mu_);
    std::optional<ClientEvent> found;
    cv_.wait_for(lock, kAnswer, [&] {
      size_t seen = 0;
      for (const auto& e : events_)
        if (e.kind == k && seen++ == n) return (found = e).has_value();
      return emulator::ShutdownSignals::requested();
    });
    return found;
  }
  template <class Pred>
  bool wait_until(Pred pred, std::chrono::seconds limit) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return pred() || emulator::ShutdownSignals::requested(); }) &&
           !emulator::ShutdownSignals::requested();
  }
  void expect_echoes(size_t n) {
    std::lock_guard lock(mu_);
    sent_at_.assign(n, 0);
    rtt_ns_.clear();
  }
  void stamp(uint32_t seq) {
    std::lock_guard lock(mu_);
    if (seq < sent_at_.size()) sent_at_[seq] = emulator::steady_now().count();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ClientEvent> events_;
  std::set<uint64_t> leaf_vcs_;
  std::vector<int64_t> sent_at_, rtt_ns_;
  uint64_t received_ = 0, received_bytes_ = 0, sent_ok_ = 0, sent_failed_ = 0;
};

struct DemoNode {
  std::string name;
  std::optional<emulator::Netns> ns;
  std::unique_ptr<emulator::Link> link;
  std::unique_ptr<emulator::PcapRecorder> pcap;
  DemoClient client;  // outlives the node, whose threads call it
  std::unique_ptr<Node> node;
  cm::AfOpenId af{};
  std::string pcap_path;
  ~DemoNode() {
    node.reset();
    if (link) link->set_recorder(nullptr);
  }
};

// Sends `seconds` of kPayload-byte packets on vc, paced at `bytes_per_s`.
uint64_t stream(Node& node, VcId vc, DemoClient& c, double seconds, double bytes_per_s) {
  const auto t0 = Clock::now();
  const auto until = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  uint64_t sent = 0;
  while (!emulator::ShutdownSignals::requested()) {
    const auto now = Clock::now();
    if (now >= until) break;
    const auto due = t0 + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(static_cast<double>(sent) * kPayload / bytes_per_s));
    if (due > now) {
      std::this_thread::sleep_for(std::min<Clock::duration>(due - now, std::chrono::milliseconds(20)));
      continue;
    }
    emulator::TxPacket p{node.data().alloc(), sent};
    if (!p.buf) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    uint8_t* d = p.buf.data() + miniport::kFramePayloadOffset;
    miniport::store_be32(d, static_cast<uint32_t>(sent));
    std::memset(d + 4, 0x5a, kPayload - 4);
    p.buf.set_size(kPayload);
    c.stamp(static_cast<uint32_t>(sent));
    if (node.data().send(vc, std::span(&p, 1)) == 1) ++sent;
    else std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return sent;
}

double pct(std::vector<int64_t> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))]);
}

// Builds the nodes: in a lab of namespaces, or on the memory wire.
std::optional<std::string> build(std::vector<std::unique_ptr<DemoNode>>& nodes,
                                 std::unique_ptr<emulator::Lab>& lab, bool memory, const std::string& dir) {
  const std::vector<std::string> names = memory ? std::vector<std::string>{"alpha", "beta"}
                                                : std::vector<std::string>{"alpha", "beta", "gamma"};
  for (const auto& n : names) {
    nodes.push_back(std::make_unique<DemoNode>());
    nodes.back()->name = n;
    nodes.back()->pcap_path = (std::filesystem::path(dir) / (n + ".pcap")).string();
  }
  if (memory) {
    auto pair = emulator::MemLink::make_pair({});
    if (!pair) return "memory wire: " + emulator::last_error();
    nodes[0]->link = std::move(pair->first);
    nodes[1]->link = std::move(pair->second);
  } else {
    emulator::LabSpec spec{.name = fmt::format("dm{}", ::getpid() % 10000),
                           .nodes = names,
                           .links = {{"alpha", "beta"}, {"beta", "gamma"}}};
    auto l = emulator::Lab::up(spec);
    if (!l) return "lab: " + emulator::last_error();
    lab = std::move(*l);
    for (size_t i = 0; i < nodes.size(); ++i) {
      const emulator::LabNode* ln = lab->node(names[i]);
      auto ns = emulator::Netns::open(ln->netns);
      if (!ns) return ln->netns + ": " + emulator::last_error();
      nodes[i]->ns = std::move(*ns);
      auto tap = emulator::TapDevice::open({.name = ln->tap, .netns = &*nodes[i]->ns, .attach = true});
      if (!tap) return ln->tap + ": " + emulator::last_error();
      nodes[i]->link = std::move(*tap);
    }
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    DemoNode& d = *nodes[i];
    auto rec = emulator::PcapRecorder::open({.path = d.pcap_path});
    if (!rec) return d.pcap_path + ": " + emulator::last_error();
    d.pcap = std::move(*rec);
    d.link->set_recorder(d.pcap.get());
    auto node = Node::start(*d.link, {.address = d.name, .mac = miniport::MacAddress::local(0xa + i)});
    if (!node) return d.name + ": " + emulator::last_error();
    d.node = std::move(*node);
    d.client.node = d.node.get();
    d.client.listener = i > 0;
    const auto af = d.node->open_af(d.node->attach(&d.client));
    if (!af) return d.name + ": open_af " + std::string(miniport::to_string(af.error()));
    d.af = af->id;
    if (i > 0 && !d.node->register_sap(d.af, kSap42)) return d.name + ": SAP 42 not registered";
  }
  for (size_t i = 1; i < nodes.size(); ++i) {
    for (int t = 0; t < 500 && !nodes[0]->node->knows(nodes[i]->name); ++t)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!nodes[0]->node->knows(nodes[i]->name)) return "alpha never heard " + nodes[i]->name;
  }
  return std::nullopt;
}

}  // namespace

void add_lab_demo_command(CLI::App& lab, LabDemoOptions& o, CLI::App*& cmd) {
  cmd = lab.add_subcommand(
      "demo",
      "The whole story in one command: three nodes in namespaces; alpha makes a guaranteed\n"
      "call to beta and streams data (beta echoes it), then a point-to-multipoint call to beta\n"
      "and gamma, then a call to a SAP nobody registered (refused with its cause). Prints a\n"
      "summary table, writes a pcap per node, and shows the first signaling exchange through\n"
      "the Wireshark dissector when tshark is installed. Without root: the memory wire.\n"
      "Example: coemu lab demo --seconds 5 --pcap-dir /tmp/demo");
  cmd->add_option("--seconds", o.seconds, "Seconds of data on the guaranteed call")
      ->check(CLI::Range(0.2, 600.0))
      ->capture_default_str();
  cmd->add_option("--rate", o.rate, "Token rate of the guaranteed call in bit/s (e.g. 20M)")
      ->check([](const std::string& v) {
        auto r = parse_si(v);
        return r && *r >= 100e3 && *r <= 8e9 ? std::string()
                                             : fmt::format("'{}': expected a rate from 100k to 8G bit/s", v);
      })
      ->capture_default_str();
  cmd->add_option("--pcap-dir", o.pcap_dir, "Where each node's capture goes (NODE.pcap)")->capture_default_str();
  cmd->add_flag("--memory", o.memory, "The memory wire even when a lab could be built");
  cmd->add_flag("-j,--json", o.json, "The summary as one JSON object on stdout");
  cmd->add_option("--dissector", o.dissector, "tools/wireshark/coemu.lua, if not beside the sources");
}

int run_lab_demo(const LabDemoOptions& o) {
  emulator::ShutdownSignals::install();
  emulator::ShutdownSignals::set_graceful(true);
  bool memory = o.memory;
  std::string why_memory = memory ? "asked for with --memory" : "";
  if (!memory) {
    if (auto p = emulator::Lab::check_privileges(); !p) {
      memory = true;
      why_memory = emulator::last_error();
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(o.pcap_dir, ec);
  if (ec) {
    fmt::print(stderr, "coemu lab demo: --pcap-dir '{}': {}\n", o.pcap_dir, ec.message());
    return 1;
  }
  auto say = [&](const std::string& s) {
    if (!o.json) fmt::print("{}\n", s), std::fflush(stdout);
  };
  std::unique_ptr<emulator::Lab> lab;  // removed last, after the nodes
  std::vector<std::unique_ptr<DemoNode>> nodes;
  if (memory) say("coemu lab demo on the memory wire (" + why_memory + "): alpha and beta only; " +
                  "both parties of the point-to-multipoint call are on beta");
  if (auto err = build(nodes, lab, memory, o.pcap_dir)) {
    fmt::print(stderr, "coemu lab demo: {}; nothing was left behind\n", *err);
    return 1;
  }
  if (!memory)
    say(fmt::format("lab {}: alpha, beta and gamma, each in its namespace with a TAP on a bridge, joined by veths",
                    lab->name()));
  DemoNode& alpha = *nodes[0];
  Node& A = *alpha.node;
  DemoClient& ca = alpha.client;
  const std::string leaf2 = memory ? "beta" : "gamma";
  Json summary{{"wire", memory ? "memory" : "lab"}, {"calls", Json::array()}};
  int rc = 0;

  // 1. A guaranteed call to beta: data streamed at 90% of the token rate, echoed.
  const double rate_bps = *parse_si(o.rate);
  auto qos = std::get<cm::Traffic>(parse_qos("guaranteed,rate=" + o.rate));
  auto made = A.create_vc(alpha.af);
  if (!made) {
    fmt::print(stderr, "coemu lab demo: alpha cannot make a VC: {}\n", miniport::to_string(made.error()));
    return 1;
  }
  const VcId vc = *made;
  {
    const auto t0 = Clock::now();
    Json j{{"call", "alpha -> beta:42"}, {"qos", describe_flowspec(qos.transmit)}};
    say(fmt::format("1. alpha calls beta:42 asking for {} and streams {} s of {}-byte packets", 
                    describe_flowspec(qos.transmit), o.seconds, kPayload));
    const Status s = A.make_call(vc, "beta", kSap42, qos);
    auto done = s == Status::kPending ? ca.wait(Ev::kMakeCallComplete) : std::nullopt;
    if (!done || done->status != Status::kSuccess) {
      j["result"] = done ? status_with_cause(done->status, done->cause) : miniport::to_string(s);
      rc = 1;
    } else {
      const double setup_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      const size_t max_packets = static_cast<size_t>(o.seconds * rate_bps / 8 / kPayload * 1.1) + 16;
      ca.expect_echoes(max_packets);
      const auto s0 = Clock::now();
      const uint64_t sent = stream(A, vc, ca, o.seconds, std::min(rate_bps / 8 * 0.9, 1e12));
      const double secs = std::chrono::duration<double>(Clock::now() - s0).count();
      (void)ca.wait_until([&] { return ca.rtt_ns_.size() >= sent; }, std::chrono::seconds(5));
      std::vector<int64_t> rtt;
      uint64_t at_beta = 0;
      {
        std::lock_guard lock(ca.mu_);
        rtt = ca.rtt_ns_;
      }
      {
        std::lock_guard lock(nodes[1]->client.mu_);
        at_beta = nodes[1]->client.received_;
      }
      j["result"] = "ok";
      j["setup_ms"] = setup_ms;
      j["sent"] = sent;
      j["received"] = at_beta;
      j["echoed"] = rtt.size();
      j["bits_per_s"] = static_cast<double>(sent) * kPayload * 8 / secs;
      j["rtt_us"] = {{"p50", pct(rtt, 0.5) / 1e3}, {"p99", pct(rtt, 0.99) / 1e3}};
      j["drops"] = sent - std::min<uint64_t>(sent, at_beta);
      if (at_beta < sent) rc = 1;
      (void)A.close_call(vc);
      if (!ca.wait(Ev::kCloseCallComplete)) rc = 1;
    }
    summary["calls"].push_back(j);
  }

  // 2. Point-to-multipoint: beta, then gamma (ADD_PARTY), one stream to both.
  {
    const size_t before_b = [&] { std::lock_guard l(nodes[1]->client.mu_); return nodes[1]->client.received_; }();
    const size_t before_c = memory ? before_b : 0;
    Json j{{"call", "alpha -> beta:42 + " + leaf2 + ":42 (point-to-multipoint)"}};
    say(fmt::format("2. alpha makes a point-to-multipoint call to beta:42, adds {}:42, sends 1 s to both", leaf2));
    auto first = A.make_multipoint_call(vc, "beta", kSap42, std::get<cm::Traffic>(parse_qos("guaranteed,rate=8M")));
    auto done = first ? ca.wait(Ev::kMakeCallComplete, 1) : std::nullopt;
    auto second = done && done->status == Status::kSuccess ? A.add_party(vc, leaf2, kSap42) : miniport::fail(Status::kFailure);
    auto added = second ? ca.wait(Ev::kAddPartyComplete) : std::nullopt;
    if (!done || done->status != Status::kSuccess || !added || added->status != Status::kSuccess) {
      j["result"] = !done ? "no answer" : done->status != Status::kSuccess ? status_with_cause(done->status, done->cause)
                    : added ? status_with_cause(added->status, added->cause) : "no answer to ADD_PARTY";
      rc = 1;
    } else {
      ca.expect_echoes(0);
      const uint64_t sent = stream(A, vc, ca, 1.0, 8e6 / 8 * 0.9);
      auto got = [&](size_t i) {
        std::lock_guard l(nodes[i]->client.mu_);
        return nodes[i]->client.received_;
      };
      const size_t want_b = memory ? 2 * sent : sent;  // on memory both parties are beta's
      (void)nodes[1]->client.wait_until([&] { return nodes[1]->client.received_ - before_b >= want_b; },
                                        std::chrono::seconds(5));
      if (!memory)
        (void)nodes[2]->client.wait_until([&] { return nodes[2]->client.received_ >= sent; }, std::chrono::seconds(5));
      const uint64_t rb = got(1) - before_b, rc2 = memory ? 0 : got(2) - before_c;
      j["result"] = "ok";
      j["parties"] = 2;
      j["sent"] = sent;
      j["received"] = memory ? Json{{"beta", rb}} : Json{{"beta", rb}, {"gamma", rc2}};
      j["drops"] = memory ? want_b - std::min<uint64_t>(want_b, rb) : (sent - std::min(sent, rb)) + (sent - std::min(sent, rc2));
      if (j["drops"].get<uint64_t>() != 0) rc = 1;
      (void)A.drop_party(*second);
      (void)ca.wait(Ev::kDropPartyComplete);
      (void)A.close_call(vc);
      if (!ca.wait(Ev::kCloseCallComplete, 1)) rc = 1;
    }
    summary["calls"].push_back(j);
  }

  // 3. A SAP nobody registered: refused with its cause.
  {
    say("3. alpha calls beta:99, where nobody listens");
    Json j{{"call", "alpha -> beta:99"}};
    const Status s = A.make_call(vc, "beta", kSap99);
    auto done = s == Status::kPending ? ca.wait(Ev::kMakeCallComplete, 2) : std::nullopt;
    if (done && done->status != Status::kSuccess && done->cause == cm::cause::kIncompatibleDestination) {
      j["result"] = "refused";
      j["status"] = miniport::to_string(done->status);
      j["cause"] = done->cause;
      j["cause_name"] = cm::cause_name(done->cause);
    } else {
      j["result"] = done ? "not refused as expected" : "no answer";
      rc = 1;
    }
    summary["calls"].push_back(j);
  }
  for (int i = 0; i < 500 && A.delete_vc(vc) != Status::kSuccess; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));

  // The nodes stop (their captures flush), then the lab goes.
  Json captures = Json::array();
  for (auto& n : nodes) {
    n->node.reset();
    n->link->set_recorder(nullptr);
    n->pcap.reset();
    captures.push_back({{"node", n->name}, {"pcap", n->pcap_path}});
  }
  summary["captures"] = captures;
  if (lab && !lab->down()) {
    fmt::print(stderr, "coemu lab demo: removing lab {}: {}\n", lab->name(), emulator::last_error());
    rc = 1;
  }

  if (o.json) {
    summary["ok"] = rc == 0;
    fmt::print("{}\n", summary.dump());
  } else {
    fmt::print("\n{:<50} {:<10} {:>9} {:>7} {:>16} {:>12} {:>20} {:>5}\n", "CALL", "RESULT", "SETUP", "SENT",
               "RECEIVED", "RATE", "RTT P50 / P99", "DROPS");
    for (const auto& c : summary["calls"]) {
      std::string received = "-";
      if (c.contains("received")) {
        if (c["received"].is_object()) {
          received.clear();
          for (const auto& [k, v] : c["received"].items()) received += (received.empty() ? "" : " ") + k + " " + v.dump();
        } else {
          received = c["received"].dump();
        }
      }
      fmt::print("{:<50} {:<10} {:>9} {:>7} {:>16} {:>12} {:>20} {:>5}\n", c["call"].get<std::string>(),
                 c["result"].get<std::string>().substr(0, 10),
                 c.contains("setup_ms") ? fmt::format("{:.2f} ms", c["setup_ms"].get<double>()) : "-",
                 c.contains("sent") ? c["sent"].dump() : "-", received,
                 c.contains("bits_per_s") ? human_bits_per_s(c["bits_per_s"].get<double>()) : "-",
                 c.contains("rtt_us") ? fmt::format("{} / {}", human_ns(c["rtt_us"]["p50"].get<double>() * 1e3),
                                                    human_ns(c["rtt_us"]["p99"].get<double>() * 1e3))
                                      : "-",
                 c.contains("drops") ? c["drops"].dump() : "-");
      if (c.contains("cause"))
        fmt::print("    refused: {}, cause {} ({})\n", c["status"].get<std::string>(), c["cause"].get<int>(),
                   c["cause_name"].get<std::string>());
    }
    fmt::print("\ncaptures:");
    for (const auto& c : captures) fmt::print(" {}", c["pcap"].get<std::string>());
    fmt::print("  (read them with: coemu decode --calls {})\n", captures[0]["pcap"].get<std::string>());
    // The first signaling exchange, through the Wireshark dissector.
    const std::string lua = o.dissector.empty() ? std::string(COEMU_SOURCE_DIR) + "/tools/wireshark/coemu.lua"
                                                : o.dissector;
    if (::access("/usr/bin/tshark", X_OK) == 0 && std::filesystem::exists(lua)) {
      const std::string cmd = fmt::format("tshark -n -X lua_script:'{}' -r '{}' -Y 'coemu.kind == 2' 2>/dev/null | head -n 4",
                                          lua, captures[0]["pcap"].get<std::string>());
      fmt::print("\nthe first signaling exchange, as tshark decodes it with {}:\n", lua);
      std::fflush(stdout);
      if (FILE* p = ::popen(cmd.c_str(), "r")) {
        char line[512];
        while (std::fgets(line, sizeof line, p)) fmt::print("  {}", line);
        ::pclose(p);
      }
    } else {
      fmt::print("\n(tshark is not installed: tools/deps.sh installs it; then the dissector shows the trace)\n");
    }
    fmt::print("\n{}\n", rc == 0 ? "demo ok" : "demo FAILED (see above)");
  }
  return rc;
}

}  // namespace tools
