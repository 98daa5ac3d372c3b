#include "tools/listen_call.h"

#include <fmt/core.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <variant>
#include <nlohmann/json.hpp>

#include "emulator/clock.h"
#include "emulator/signals.h"
#include "miniport/byte_order.h"
#include "miniport/frame.h"

namespace tools {

using cm::ClientEvent;
using emulator::Node;
using miniport::Status;
using miniport::VcId;
using Ev = ClientEvent::Kind;
using Seconds = std::chrono::duration<double>;

namespace {

constexpr int kUsage = 2;

// A client's events and data, waited on by the command's main thread.
class Waiter {
 public:
  // Waits until pred() (checked under the lock) holds, `limit` passes, or
  // Ctrl-C; returns pred().
  template <class Pred>
  bool wait(Pred pred, Seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(limit);
    std::unique_lock lock(mu_);
    while (!pred()) {
      if (emulator::ShutdownSignals::requested() || std::chrono::steady_clock::now() >= deadline) return false;
      // Signals do not notify the condition variable: look again soon.
      cv_.wait_for(lock, std::chrono::milliseconds(50));
    }
    return true;
  }

  std::mutex mu_;
  std::condition_variable cv_;
};

// Stops a command's node when it leaves scope: declared after the client,
// it runs first, so the node's threads never call a destroyed client.
struct StopFirst {
  CliNode& cli;
  ~StopFirst() { cli.node.reset(); }
};

void print_event(const ClientEvent& e, bool json) {
  fmt::print("{}\n", describe(e, json));
  std::fflush(stdout);
}

// ---- listen ----

class Listener : public emulator::NodeClient, public Waiter {
 public:
  Listener(Node& node, const ListenOptions& o) : node_(node), o_(o) {}

  emulator::AfOpenId af;
  std::vector<cm::SapId> saps;

  void on_event(const ClientEvent& e) override {
    print_event(e, o_.node.json);
    switch (e.kind) {
      case Ev::kIncomingCall: {
        const Status answer = o_.mode == "reject" ? Status::kNotAccepted : Status::kSuccess;
        {
          std::lock_guard lock(mu_);
          calls_[key(e.vc)] = Call{e.peer_address, 0, 0, 0};
        }
        if (node_.incoming_call_complete(e.vc, answer) != Status::kSuccess)
          fmt::print(stderr, "coemu listen: could not answer the call on vc {}.{}\n", e.vc.slot, e.vc.gen);
        if (answer != Status::kSuccess) ended(e.vc);  // a refused call ends here: no close follows
        break;
      }
      case Ev::kIncomingClose:
        (void)node_.close_call(e.vc);  // R67: the close is acknowledged with our own
        break;
      case Ev::kOidRequest:
        (void)node_.oid_request_complete(e.request, Status::kSuccess);  // R77: taken note of
        break;
      case Ev::kCloseCallComplete:
      case Ev::kMakeCallComplete:  // not ours: listen places no calls
        if (e.kind == Ev::kCloseCallComplete) ended(e.vc);
        break;
      case Ev::kNotifyCloseAf: {
        // The node is shutting down: close the calls, the SAPs, then the AF
        // (which waits for the calls to be gone, R17).
        std::vector<VcId> live;
        {
          std::lock_guard lock(mu_);
          for (const auto& [k, c] : calls_) live.push_back(VcId{static_cast<uint32_t>(k >> 32), static_cast<uint32_t>(k)});
        }
        for (VcId vc : live) (void)node_.close_call(vc);
        for (cm::SapId s : saps) (void)node_.deregister_sap(s);
        (void)node_.close_af(e.af);
        break;
      }
      default:
        break;
    }
    cv_.notify_all();
  }

  void on_receive(std::span<emulator::RxPacket> pkts) override {
    std::lock_guard lock(mu_);
    for (auto& p : pkts) {
      Call& c = calls_[key(p.vc())];
      ++c.packets;
      c.bytes += p.payload().size();
      if (o_.mode != "echo") continue;
      emulator::TxPacket tx{node_.data().alloc(), 0};
      if (!tx.buf) continue;  // pool empty: this one is not echoed
      std::memcpy(tx.buf.data() + miniport::kFramePayloadOffset, p.payload().data(), p.payload().size());
      tx.buf.set_size(static_cast<uint32_t>(p.payload().size()));
      c.echoed += node_.data().send(p.vc(), std::span(&tx, 1));
    }
  }

  uint32_t ended_calls() {
    std::lock_guard lock(mu_);
    return ended_;
  }
  uint32_t ended_calls_locked() const { return ended_; }  // inside wait()'s predicate

 private:
  struct Call {
    std::string peer;
    uint64_t packets = 0, bytes = 0, echoed = 0;
  };
  static uint64_t key(VcId vc) { return uint64_t{vc.slot} << 32 | vc.gen; }

  void ended(VcId vc) {
    std::lock_guard lock(mu_);
    auto it = calls_.find(key(vc));
    if (it == calls_.end()) return;
    const Call& c = it->second;
    if (o_.node.json) {
      fmt::print("{}\n", nlohmann::json{{"event", "call_summary"},
                                        {"vc", fmt::format("{}.{}", vc.slot, vc.gen)},
                                        {"peer", c.peer},
                                        {"packets", c.packets},
                                        {"bytes", c.bytes},
                                        {"echoed", c.echoed}}
                             .dump());
    } else {
      if (o_.mode == "reject")
        fmt::print("call from {} on vc {}.{} rejected\n", c.peer, vc.slot, vc.gen);
      else
        fmt::print("call from {} on vc {}.{} ended: received {} packets ({} bytes){}\n", c.peer, vc.slot, vc.gen,
                   c.packets, c.bytes, o_.mode == "echo" ? fmt::format(", echoed {}", c.echoed) : "");
    }
    std::fflush(stdout);
    calls_.erase(it);
    ++ended_;
  }

  Node& node_;
  const ListenOptions& o_;
  std::map<uint64_t, Call> calls_;
  uint32_t ended_ = 0;
};

// ---- call ----

class Caller : public emulator::NodeClient, public Waiter {
 public:
  Caller(Node& node, const CallOptions& o) : node_(node), o_(o), sent_at_(o.count, 0) {}

  void on_event(const ClientEvent& e) override {
    print_event(e, o_.node.json);
    {
      std::lock_guard lock(mu_);
      seen_.push_back(e);
    }
    if (e.kind == Ev::kIncomingClose) (void)node_.close_call(e.vc);  // R67
    if (e.kind == Ev::kOidRequest) (void)node_.oid_request_complete(e.request, Status::kSuccess);  // R77
    cv_.notify_all();
  }
  void on_receive(std::span<emulator::RxPacket> pkts) override {
    const int64_t now = emulator::steady_now().count();
    std::lock_guard lock(mu_);
    for (auto& p : pkts) {
      if (p.payload().size() < 4) continue;
      const uint32_t seq = miniport::load_be32(p.payload().data());
      if (seq < sent_at_.size() && sent_at_[seq] != 0) {
        rtt_ns_.push_back(now - sent_at_[seq]);
        sent_at_[seq] = 0;  // a duplicate counts once
      }
    }
    cv_.notify_all();
  }
  void on_send_complete(std::span<const emulator::TxCompletion> done) override {
    std::lock_guard lock(mu_);
    for (const auto& d : done) (d.status == Status::kSuccess ? ok_ : failed_) += 1;
    cv_.notify_all();
  }

  const ClientEvent* seen(Ev k) {  // under the lock
    for (const auto& e : seen_)
      if (e.kind == k) return &e;
    return nullptr;
  }
  bool wait_event(Ev k, Seconds limit) {
    return wait([&] { return seen(k) != nullptr; }, limit);
  }
  ClientEvent event(Ev k) {
    std::lock_guard lock(mu_);
    return *seen(k);
  }
  void stamp(uint32_t seq) {
    std::lock_guard lock(mu_);
    sent_at_[seq] = emulator::steady_now().count();
  }

  Node& node_;
  const CallOptions& o_;
  std::vector<ClientEvent> seen_;
  std::vector<int64_t> sent_at_;
  std::vector<int64_t> rtt_ns_;
  uint64_t ok_ = 0, failed_ = 0;
};

}  // namespace

void add_listen_command(CLI::App& app, ListenOptions& o, CLI::App*& cmd) {
  cmd = app.add_subcommand("listen",
                           "Run a node that listens on SAPs and answers incoming calls; prints each event.\n"
                           "Example (in a lab made by `coemu lab up l1 --nodes a,b --link a-b`):\n"
                           "  coemu listen -n coe-l1-b -d coel1t1 -a beta --sap 42 --mode echo");
  add_node_options(cmd, o.node);
  cmd->add_option("-s,--sap", o.saps,
                  "SAP to listen on (repeatable): 42 or selector:42, service:NAME, wildcard [default: 42]");
  cmd->add_option("-m,--mode", o.mode, "accept, reject (cause 21), echo (send data back) or sink")
      ->check(CLI::IsMember({"accept", "reject", "echo", "sink"}))
      ->capture_default_str();
  cmd->add_option("-c,--calls", o.max_calls, "Stop after this many calls ended (0: until Ctrl-C)")
      ->capture_default_str();
}

void add_call_command(CLI::App& app, CallOptions& o, CLI::App*& cmd) {
  cmd = app.add_subcommand("call",
                           "Run a node, call NODE:SAP, send packets on the call, close it; prints each event.\n"
                           "Example: coemu call -n coe-l1-a -d coel1t0 -a alpha beta:42 --count 100 --echo");
  add_node_options(cmd, o.node);
  cmd->add_option("dest", o.dest, "Who to call: NODE:SAP (SAP as for listen --sap)")->required();
  cmd->add_option("--count", o.count, "Packets to send")->check(CLI::Range(uint64_t{0}, uint64_t{100'000'000}))
      ->capture_default_str();
  cmd->add_option("--size", o.size, "Payload bytes per packet (4 up to what the link's MTU allows)")
      ->check(CLI::Range(4u, 65499u))
      ->capture_default_str();
  cmd->add_option("--wait", o.wait, "Seconds to wait for the peer's HELLO and for each answer")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  cmd->add_flag("--echo", o.expect_echo, "Wait for every packet to come back (listen --mode echo); report RTT");
}

int run_listen(const ListenOptions& o) {
  std::vector<cm::SapSpec> saps;
  for (const auto& s : o.saps.empty() ? std::vector<std::string>{"42"} : o.saps) {
    auto spec = parse_sap(s);
    if (!spec) {
      fmt::print(stderr, "coemu listen: --sap '{}': expected 1-65535, selector:N, service:NAME or wildcard\n", s);
      return kUsage;
    }
    saps.push_back(*spec);
  }
  emulator::ShutdownSignals::install();
  emulator::ShutdownSignals::set_graceful(true);
  auto started = start_cli_node(o.node, "listen");
  if (auto* rc = std::get_if<int>(&started)) return *rc;
  auto& cli = *std::get<std::unique_ptr<CliNode>>(started);
  Node& node = *cli.node;
  Listener l(node, o);
  const StopFirst stop{cli};  // the node stops before the client goes
  const cm::ClientId me = node.attach(&l);
  auto af = node.open_af(me);
  if (!af) {
    fmt::print(stderr, "coemu listen: open address family: {}\n", miniport::to_string(af.error()));
    return 1;
  }
  l.af = *af;
  for (const auto& spec : saps) {
    auto sap = node.register_sap(l.af, spec);
    if (!sap) {
      fmt::print(stderr, "coemu listen: SAP {}: {}{}\n", sap_to_string(spec), miniport::to_string(sap.error()),
                 sap.error() == Status::kSapInUse ? " (another client of this node holds it)" : "");
      return 1;
    }
    l.saps.push_back(*sap);
    fmt::print(stderr, "coemu listen: listening on {} ({})\n", sap_to_string(spec), o.mode);
  }
  const bool done = l.wait([&] { return o.max_calls != 0 && l.ended_calls_locked() >= o.max_calls; },
                           std::chrono::hours(24 * 365));
  (void)done;
  // Ctrl-C or enough calls: the node closes its AF through us (R16).
  if (node.close_address_families(std::chrono::seconds(5)) != Status::kSuccess)
    fmt::print(stderr, "coemu listen: calls still closing after 5 s; leaving anyway\n");
  fmt::print(stderr, "coemu listen: {} calls ended\n", l.ended_calls());
  return 0;
}

int run_call(const CallOptions& o) {
  // Node addresses hold no ':', so the first one ends the node.
  const auto colon = o.dest.find(':');
  const std::string peer = o.dest.substr(0, colon);
  const std::optional<cm::SapSpec> sap =
      colon == std::string::npos || colon == 0 ? std::nullopt : parse_sap(o.dest.substr(colon + 1));
  if (!sap) {
    fmt::print(stderr, "coemu call: '{}': expected NODE:SAP such as beta:42, beta:service:echo or beta:wildcard\n",
               o.dest);
    return kUsage;
  }
  emulator::ShutdownSignals::install();
  emulator::ShutdownSignals::set_graceful(true);
  auto started = start_cli_node(o.node, "call");
  if (auto* rc = std::get_if<int>(&started)) return *rc;
  auto& cli = *std::get<std::unique_ptr<CliNode>>(started);
  Node& node = *cli.node;
  if (o.size > node.data().max_payload()) {
    fmt::print(stderr, "coemu call: --size {}: at most {} bytes fit the MTU of {}\n", o.size,
               node.data().max_payload(), o.node.dev);
    return kUsage;
  }
  Caller c(node, o);
  const StopFirst stop{cli};  // the node stops before the client goes
  const cm::ClientId me = node.attach(&c);
  const Seconds wait(o.wait);
  const auto heard_deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(wait);
  while (!node.knows(peer)) {
    if (emulator::ShutdownSignals::requested()) return 1;
    if (std::chrono::steady_clock::now() > heard_deadline) {
      fmt::print(stderr, "coemu call: no HELLO from node '{}' on {} within {} s (is it running on this link?)\n",
                 peer, o.node.dev, o.wait);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto af = node.open_af(me);
  if (!af) {
    fmt::print(stderr, "coemu call: open address family: {}\n", miniport::to_string(af.error()));
    return 1;
  }
  auto vc = node.create_vc(*af);
  if (!vc) {
    fmt::print(stderr, "coemu call: cannot make a VC: {}\n", miniport::to_string(vc.error()));
    return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (Status s = node.make_call(*vc, peer, *sap); s != Status::kPending) {
    fmt::print(stderr, "coemu call: call to {} refused at once: {}\n", o.dest, miniport::to_string(s));
    return 1;
  }
  // T303 and T310 bound the answer; --wait bounds our patience on top.
  if (!c.wait_event(Ev::kMakeCallComplete, wait + Seconds(40))) {
    fmt::print(stderr, "coemu call: no answer from {}\n", o.dest);
    return 1;
  }
  const ClientEvent done = c.event(Ev::kMakeCallComplete);
  const double setup_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  int rc = 0;
  if (done.status != Status::kSuccess) {
    if (o.node.json)  // the text event line said it already
      fmt::print(stderr, "coemu call: call to {} failed: {}\n", o.dest, status_with_cause(done.status, done.cause));
    rc = 1;
  } else {
    const auto s0 = std::chrono::steady_clock::now();
    uint64_t sent = 0;
    while (sent < o.count && !emulator::ShutdownSignals::requested()) {
      emulator::TxPacket p{node.data().alloc(), sent};
      if (!p.buf) {  // pool empty: completions refill it
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        continue;
      }
      uint8_t* d = p.buf.data() + miniport::kFramePayloadOffset;
      miniport::store_be32(d, static_cast<uint32_t>(sent));
      for (uint32_t i = 4; i < o.size; ++i) d[i] = static_cast<uint8_t>(sent + i);
      p.buf.set_size(o.size);
      c.stamp(static_cast<uint32_t>(sent));
      if (node.data().send(*vc, std::span(&p, 1)) == 1) ++sent;
      else std::this_thread::sleep_for(std::chrono::microseconds(100));  // ring full: back-pressure
    }
    const bool completed = c.wait([&] { return c.ok_ + c.failed_ >= sent; }, wait);
    const bool echoed = !o.expect_echo || c.wait([&] { return c.rtt_ns_.size() >= sent; }, wait);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
    std::vector<int64_t> rtt;
    uint64_t ok, failed;
    {
      std::unique_lock lock(c.mu_);
      rtt = c.rtt_ns_;
      ok = c.ok_;
      failed = c.failed_;
    }
    std::sort(rtt.begin(), rtt.end());
    auto pct = [&](double q) { return rtt.empty() ? 0.0 : rtt[static_cast<size_t>(q * (rtt.size() - 1))] / 1e3; };
    if (o.node.json) {
      nlohmann::json j{{"event", "call_summary"}, {"dest", o.dest},     {"setup_ms", setup_ms},
                       {"sent", sent},            {"completed_ok", ok}, {"completed_failed", failed},
                       {"echoed", rtt.size()},    {"seconds", secs}};
      if (!rtt.empty()) j["rtt_us"] = {{"p50", pct(0.5)}, {"p99", pct(0.99)}};
      fmt::print("{}\n", j.dump());
    } else {
      fmt::print("call to {}: set up in {:.2f} ms; sent {} packets of {} bytes in {:.3f} s: {} completed ok, {} failed",
                 o.dest, setup_ms, sent, o.size, secs, ok, failed);
      if (o.expect_echo) fmt::print("; {} echoed, rtt p50 {:.1f} us, p99 {:.1f} us", rtt.size(), pct(0.5), pct(0.99));
      fmt::print("\n");
    }
    if (sent < o.count || !completed || failed || !echoed) rc = 1;
    if (emulator::ShutdownSignals::requested()) fmt::print(stderr, "coemu call: interrupted\n");
    // Our close, unless the peer's close is already being answered.
    const Status cs = node.close_call(*vc);
    if (cs != Status::kPending && cs != Status::kFailure)
      fmt::print(stderr, "coemu call: close: {}\n", miniport::to_string(cs));
    if (!c.wait_event(Ev::kCloseCallComplete, wait + Seconds(40))) {
      fmt::print(stderr, "coemu call: the close did not complete\n");
      rc = 1;
    }
  }
  // The VC goes once its deactivation has drained. (Never call into the node
  // under the client's lock: the control thread takes it in on_event.)
  bool deleted = false;
  for (int i = 0; i < 500 && !(deleted = node.delete_vc(*vc) == Status::kSuccess); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (!deleted || node.close_af(*af) != Status::kSuccess) {
    fmt::print(stderr, "coemu call: could not release the VC and the address family\n");
    rc = 1;
  }
  return rc;
}

}  // namespace tools
