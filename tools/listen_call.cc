#include "tools/listen_call.h"

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <map>
#include <set>
#include <mutex>
#include <thread>
#include <variant>
#include <nlohmann/json.hpp>

#include "emulator/clock.h"
#include "emulator/signals.h"
#include "miniport/byte_order.h"
#include "miniport/frame.h"
#include "tools/qos_spec.h"
#include "tools/units.h"

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
  ~StopFirst() { cli.stop(); }
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
  // Set once every --sap is registered: what `lab up` waits for ("ready").
  std::atomic<bool> ready{false};

  void on_event(const ClientEvent& e) override {
    print_event(e, o_.node.json);
    switch (e.kind) {
      case Ev::kIncomingCall: {
        const Status answer = o_.mode == "reject"
                                  ? cm::refusal_status(static_cast<uint8_t>(o_.cause)).value_or(Status::kNotAccepted)
                                  : Status::kSuccess;
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
      case Ev::kCloseCallComplete: {
        ended(e.vc);
        bool own = false;
        {
          std::lock_guard lock(mu_);
          own = own_vcs_.erase(key(e.vc)) != 0;
        }
        // A PVC's VC is ours (the CM makes the others): it goes with its
        // call, or once its deactivation has drained (delete_leftovers).
        if (own && node_.delete_vc(e.vc) != Status::kSuccess) {
          std::lock_guard lock(mu_);
          leftover_.push_back(e.vc);
        }
        break;
      }
      case Ev::kMakeCallComplete: {  // a PERMANENT_VC call on a PVC `coemu pvc add` configured
        std::lock_guard lock(mu_);
        pvc_done_[key(e.vc)] = e.status;
        break;
      }
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

  // Deletes the PVC VCs whose deactivation was still draining at their close.
  void delete_leftovers() {
    std::vector<VcId> vcs;
    {
      std::lock_guard lock(mu_);
      vcs.swap(leftover_);
    }
    for (VcId v : vcs) {
      bool gone = false;
      for (int i = 0; i < 200 && !(gone = node_.delete_vc(v) == Status::kSuccess); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (!gone) fmt::print(stderr, "coemu listen: could not delete vc {}.{}\n", v.slot, v.gen);
    }
  }

  uint32_t ended_calls() {
    std::lock_guard lock(mu_);
    return ended_;
  }

  // `coemu pvc add RX TX PEER` / `pvc del RX` through the control socket:
  // the PVC goes on our AF (OID_CO_ADD_PVC) and a PERMANENT_VC call on it
  // is answered as the mode says; deleting it lets the CM close that call.
  // Returns the JSON answer.
  std::string pvc(const std::vector<std::string>& w) {
    auto fail = [](const std::string& why) { return nlohmann::json{{"error", why}}.dump(); };
    auto number = [](const std::string& v) {  // a VCI: 1..2^32-1
      const auto n = parse_u32(v);
      return n && *n != 0 ? n : std::nullopt;
    };
    if (w.size() == 5 && w[1] == "add") {
      const auto rx = number(w[2]), tx = number(w[3]);
      if (!rx || !tx) return fail("VCIs must be 1..4294967295");
      const auto peer = resolve_peer(node_, w[4]);
      if (!peer) return fail("peer '" + w[4] + "': neither a MAC nor a node address");
      const cm::PvcSpec spec{*rx, *tx, *peer};
      const auto buf = cm::encode_co_pvc(spec);
      if (auto r = node_.set_cm(af, cm::co_oid::kAddPvc, buf); r.status != Status::kSuccess)
        return fail(fmt::format("OID_CO_ADD_PVC: {}", miniport::to_string(r.status)));
      auto vc = node_.create_vc(af);
      if (!vc) {
        (void)node_.set_cm(af, cm::co_oid::kDeletePvc, buf);
        return fail(fmt::format("no VC: {}", miniport::to_string(vc.error())));
      }
      {
        std::lock_guard lock(mu_);
        calls_[key(*vc)] = Call{fmt::format("pvc {}", *rx), 0, 0, 0};
        own_vcs_.insert(key(*vc));
        pvcs_[*rx] = spec;
      }
      // A call that did not come up leaves nothing behind: not the PVC on
      // the node's list, not the VC (it holds no call then).
      auto undo = [&] {
        {
          std::lock_guard lock(mu_);
          calls_.erase(key(*vc));
          own_vcs_.erase(key(*vc));
          pvcs_.erase(*rx);
        }
        (void)node_.set_cm(af, cm::co_oid::kDeletePvc, buf);
        (void)node_.delete_vc(*vc);
      };
      if (Status st = node_.make_pvc_call(*vc, *rx); st != Status::kPending) {
        undo();
        return fail(fmt::format("PERMANENT_VC call: {}", miniport::to_string(st)));
      }
      const bool done = wait([&] { return pvc_done_.count(key(*vc)) != 0; }, Seconds(5));
      std::unique_lock lock(mu_);
      if (done && pvc_done_[key(*vc)] != Status::kSuccess) {
        const Status st = pvc_done_[key(*vc)];
        lock.unlock();
        undo();
        return fail(fmt::format("PERMANENT_VC call: {}", miniport::to_string(st)));
      }
      if (!done) return fail("PERMANENT_VC call: no answer");
      return nlohmann::json{{"ok", true}, {"vc", vc_text(*vc)}, {"rx_vci", *rx},
                            {"tx_vci", *tx}, {"peer", peer->to_string()}}
          .dump();
    }
    if (w.size() == 3 && w[1] == "del") {
      const auto rx = number(w[2]);
      std::optional<cm::PvcSpec> spec;
      {
        std::lock_guard lock(mu_);
        if (rx && pvcs_.count(*rx)) spec = pvcs_[*rx], pvcs_.erase(*rx);
      }
      if (!spec) return fail("no PVC with VCI " + w[2] + " was added here");
      if (auto r = node_.set_cm(af, cm::co_oid::kDeletePvc, cm::encode_co_pvc(*spec)); r.status != Status::kSuccess)
        return fail(fmt::format("OID_CO_DELETE_PVC: {}", miniport::to_string(r.status)));
      return nlohmann::json{{"ok", true}, {"rx_vci", *rx}}.dump();
    }
    return fail("expected: pvc add RX_VCI TX_VCI PEER | pvc del RX_VCI");
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
                                        {"vc", vc_text(vc)},
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
  std::map<uint64_t, Status> pvc_done_;   // PERMANENT_VC calls completed, by VC
  std::map<uint32_t, cm::PvcSpec> pvcs_;  // PVCs added here, by receive VCI
  std::set<uint64_t> own_vcs_;            // VCs made for them
  std::vector<VcId> leftover_;            // ... closed, not yet deleted
  uint32_t ended_ = 0;
};

// ---- call ----

class Caller : public emulator::NodeClient, public Waiter {
 public:
  Caller(Node& node, const CallOptions& o, uint64_t echo_slots) : node_(node), o_(o), sent_at_(echo_slots, 0) {}

  void on_event(const ClientEvent& e) override {
    print_event(e, o_.node.json);
    {
      std::lock_guard lock(mu_);
      seen_.push_back(e);
    }
    if (e.kind == Ev::kIncomingClose) {
      cleared_cause_.store(e.cause);  // the sender stops: the call is gone
      (void)node_.close_call(e.vc);   // R67
    }
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

  // The n-th (from 0) event of kind k so far, under the lock.
  const ClientEvent* seen(Ev k, size_t n = 0) {
    for (const auto& e : seen_)
      if (e.kind == k && n-- == 0) return &e;
    return nullptr;
  }
  bool wait_event(Ev k, Seconds limit, size_t n = 0) {
    return wait([&] { return seen(k, n) != nullptr; }, limit);
  }
  ClientEvent event(Ev k, size_t n = 0) {
    std::lock_guard lock(mu_);
    return *seen(k, n);
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
  std::atomic<int> cleared_cause_{-1};  // the cause of an incoming close, once one came
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
  cmd->add_option("-m,--mode", o.mode, "accept, reject (with --cause), echo (send data back) or sink")
      ->check(CLI::IsMember({"accept", "reject", "echo", "sink"}))
      ->capture_default_str();
  cmd->add_option("--cause", o.cause,
                  "reject: the cause the caller hears: 21 call rejected, 47 resource unavailable,\n"
                  "49 QoS unavailable, 88 incompatible destination, 27 destination out of order, 3 no route")
      ->check([](const std::string& v) {
        const bool ok = !v.empty() && v.size() <= 3 && v.find_first_not_of("0123456789") == std::string::npos &&
                        cm::refusal_status(static_cast<uint8_t>(std::stoul(v))).has_value();
        return ok ? std::string() : fmt::format("'{}': one of 21, 47, 49, 88, 27, 3", v);
      })
      ->capture_default_str();
  cmd->add_option("-c,--calls", o.max_calls, "Stop after this many calls ended (0: until Ctrl-C)")
      ->capture_default_str();
}

void add_call_command(CLI::App& app, CallOptions& o, CLI::App*& cmd) {
  cmd = app.add_subcommand(
      "call",
      "Run a node, call NODE:SAP (several: one point-to-multipoint call), send packets on the\n"
      "call, close it; prints each event and a summary.\n"
      "Examples (in a lab made by `coemu lab up l1 --nodes a,b,c --link a-b --link b-c`):\n"
      "  coemu call -n coe-l1-a -d coel1t0 -a alpha beta:42 --count 100 --echo\n"
      "  coemu call -n coe-l1-a -d coel1t0 -a alpha beta:42 --qos guaranteed,rate=10M --duration 3s\n"
      "  coemu call -n coe-l1-a -d coel1t0 -a alpha beta:42 gamma:42 --rate 1M --count 500");
  add_node_options(cmd, o.node);
  cmd->add_option("dest", o.dests,
                  "Who to call: NODE:SAP (SAP as for listen --sap); several make a point-to-multipoint\n"
                  "call with one party each (the first with SETUP, the rest with ADD_PARTY)");
  cmd->add_option("--pvc", o.pvc,
                  "Instead of calling: configure the PVC RX_VCI:TX_VCI@PEER (PEER a node heard, or a MAC)\n"
                  "and send on a PERMANENT_VC call over it, no signaling (the peer: `coemu pvc add`)");
  cmd->add_flag("--multipoint", o.multipoint, "Make a point-to-multipoint call even to one party");
  cmd->add_option("-q,--qos", o.qos,
                  "FLOWSPEC asked for, both directions: SERVICE[,rate=R][,bucket=B][,peak=R][,latency=T]\n"
                  "[,jitter=T][,sdu=B][,min=B]; SERVICE is best-effort, controlled-load or guaranteed;\n"
                  "R in bit/s (100M, 1.5G) or bytes/s (12.5MB); B in bytes (64k = 65536); T like 10ms.\n"
                  "e.g. guaranteed,rate=100M,bucket=64k [default: best-effort]")
      ->check([](const std::string& v) {
        auto q = parse_qos(v);
        return std::holds_alternative<std::string>(q) ? std::get<std::string>(q) : std::string();
      });
  cmd->add_option("--count", o.count, "Packets to send [default: 10; no limit with --duration]")
      ->check(CLI::Range(int64_t{0}, int64_t{1'000'000'000}));
  cmd->add_option("--duration", o.duration, "Send for this long, e.g. 5s or 500ms (stops earlier at --count)")
      ->check([](const std::string& v) {
        auto t = parse_seconds(v);
        return t && *t > 0 && *t <= 86400 ? std::string()
                                           : fmt::format("'{}': expected a time such as 5s or 500ms (up to 24h)", v);
      });
  cmd->add_option("--rate", o.rate, "Pace the payload at this rate in bit/s, e.g. 10M [default: as fast as it goes]")
      ->check([](const std::string& v) {
        auto r = parse_si(v);
        return r && *r >= 1000 ? std::string()
                               : fmt::format("'{}': expected a rate of at least 1k bit/s, such as 10M or 500k", v);
      });
  cmd->add_option("--size", o.size, "Payload bytes per packet (4 up to what the link's MTU allows)")
      ->check(CLI::Range(4u, 65499u))
      ->capture_default_str();
  cmd->add_option("--wait", o.wait, "Seconds to wait for the peers' HELLOs and for each answer")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  cmd->add_flag("--echo", o.expect_echo,
                "Wait for every packet to come back (listen --mode echo); report RTT (point-to-point only)");
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
  {
    std::lock_guard lock(cli.extra_mu);
    cli.extra = [&l](const std::string& req) -> std::optional<std::string> {
      if (req == "ready") return nlohmann::json{{"ready", l.ready.load()}}.dump();
      if (req.rfind("pvc ", 0) != 0) return std::nullopt;
      std::vector<std::string> w;
      for (size_t i = 0; i < req.size();) {
        const size_t j = std::min(req.find(' ', i), req.size());
        if (j > i) w.push_back(req.substr(i, j - i));
        i = j + 1;
      }
      return l.pvc(w);
    };
  }
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
  l.ready = true;
  const bool done = l.wait([&] { return o.max_calls != 0 && l.ended_calls_locked() >= o.max_calls; },
                           std::chrono::hours(24 * 365));
  (void)done;
  l.delete_leftovers();
  // Ctrl-C or enough calls: the node closes its AF through us (R16).
  if (node.close_address_families(std::chrono::seconds(5)) != Status::kSuccess)
    fmt::print(stderr, "coemu listen: calls still closing after 5 s; leaving anyway\n");
  fmt::print(stderr, "coemu listen: {} calls ended\n", l.ended_calls());
  return 0;
}

namespace {

struct Dest {
  std::string node;
  cm::SapSpec sap;
  std::string text;  // as given
};

// What a call's data phase did.
struct Sent {
  uint64_t packets = 0;
  double seconds = 0;
};

// Sends packets on vc: --count of them or for --duration, paced at --rate.
Sent send_packets(Node& node, VcId vc, Caller& c, const CallOptions& o) {
  const double duration = o.duration.empty() ? 0 : *parse_seconds(o.duration);
  const uint64_t count = o.count >= 0 ? static_cast<uint64_t>(o.count) : duration > 0 ? UINT64_MAX : 10;
  const double rate_bytes = o.rate.empty() ? 0 : *parse_si(o.rate) / 8;
  const auto s0 = std::chrono::steady_clock::now();
  const auto until = s0 + std::chrono::duration_cast<std::chrono::nanoseconds>(Seconds(duration));
  Sent out;
  while (out.packets < count && !emulator::ShutdownSignals::requested() && c.cleared_cause_.load() < 0) {
    const auto now = std::chrono::steady_clock::now();
    if (duration > 0 && now >= until) break;
    if (rate_bytes > 0) {  // the next packet is due once the ones before it fit the rate
      const auto due = s0 + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                Seconds(static_cast<double>(out.packets) * o.size / rate_bytes));
      if (due > now) {
        std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(due - now, std::chrono::milliseconds(50)));
        continue;
      }
    }
    emulator::TxPacket p{node.data().alloc(), out.packets};
    if (!p.buf) {  // pool empty: completions refill it
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      continue;
    }
    uint8_t* d = p.buf.data() + miniport::kFramePayloadOffset;
    miniport::store_be32(d, static_cast<uint32_t>(out.packets));
    for (uint32_t i = 4; i < o.size; ++i) d[i] = static_cast<uint8_t>(out.packets + i);
    p.buf.set_size(o.size);
    if (o.expect_echo) c.stamp(static_cast<uint32_t>(out.packets));
    if (node.data().send(vc, std::span(&p, 1)) == 1) ++out.packets;
    else std::this_thread::sleep_for(std::chrono::microseconds(100));  // ring full: back-pressure
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
  return out;
}

}  // namespace

int run_call(const CallOptions& o) {
  if (o.dests.empty() == o.pvc.empty()) {
    fmt::print(stderr, "coemu call: {}\n", o.pvc.empty() ? "who to call? NODE:SAP (or --pvc RX:TX@PEER)"
                                                          : "--pvc sends on a PVC: drop the NODE:SAP");
    return kUsage;
  }
  std::optional<cm::PvcSpec> pvc;
  std::string pvc_peer;
  if (!o.pvc.empty()) {
    const auto colon = o.pvc.find(':'), at = o.pvc.find('@');
    auto num = [](const std::string& v) { return parse_u32(v).value_or(0); };  // 0: not a VCI
    const uint32_t rx = colon == std::string::npos ? 0 : num(o.pvc.substr(0, colon));
    const uint32_t tx = colon == std::string::npos || at == std::string::npos || at < colon
                            ? 0
                            : num(o.pvc.substr(colon + 1, at - colon - 1));
    if (rx == 0 || rx >= 1048576 || tx == 0 || at + 1 >= o.pvc.size()) {
      fmt::print(stderr, "coemu call: --pvc '{}': expected RX_VCI:TX_VCI@PEER such as 100:200@beta "
                         "(RX_VCI 1..1048575)\n", o.pvc);
      return kUsage;
    }
    pvc = cm::PvcSpec{rx, tx, {}};
    pvc_peer = o.pvc.substr(at + 1);
  }
  std::vector<Dest> dests;
  for (const auto& d : o.dests) {
    // Node addresses hold no ':', so the first one ends the node.
    const auto colon = d.find(':');
    const std::optional<cm::SapSpec> sap =
        colon == std::string::npos || colon == 0 ? std::nullopt : parse_sap(d.substr(colon + 1));
    if (!sap) {
      fmt::print(stderr, "coemu call: '{}': expected NODE:SAP such as beta:42, beta:service:echo or beta:wildcard\n",
                 d);
      return kUsage;
    }
    dests.push_back({d.substr(0, colon), *sap, d});
  }
  const bool multipoint = o.multipoint || dests.size() > 1;
  if (multipoint && o.expect_echo) {
    fmt::print(stderr, "coemu call: --echo: the leaves of a point-to-multipoint call never send\n");
    return kUsage;
  }
  if (dests.size() > 64) {
    fmt::print(stderr, "coemu call: {} parties: a point-to-multipoint call has at most 64\n", dests.size());
    return kUsage;
  }
  const cm::Traffic traffic = o.qos.empty() ? cm::Traffic{} : std::get<cm::Traffic>(parse_qos(o.qos));
  const uint64_t echo_slots = o.count >= 0 ? static_cast<uint64_t>(o.count) : 10;
  if (o.expect_echo && (!o.duration.empty() && o.count < 0)) {
    fmt::print(stderr, "coemu call: --echo needs --count (it keeps a send time per packet)\n");
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
               node.data().max_payload(), cli.opts.dev);
    return kUsage;
  }
  Caller c(node, o, o.expect_echo ? echo_slots : 0);
  const StopFirst stop{cli};  // the node stops before the client goes
  const cm::ClientId me = node.attach(&c);
  const Seconds wait(o.wait);
  const auto heard_deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(wait);
  std::vector<std::string> must_hear;
  for (const Dest& d : dests) must_hear.push_back(d.node);
  if (pvc && !miniport::MacAddress::parse(pvc_peer)) must_hear.push_back(pvc_peer);
  for (const std::string& peer : must_hear) {
    while (!node.knows(peer)) {
      if (emulator::ShutdownSignals::requested()) return 1;
      if (std::chrono::steady_clock::now() > heard_deadline) {
        fmt::print(stderr, "coemu call: no HELLO from node '{}' on {} within {} s (is it running on this link?)\n",
                   peer, cli.opts.dev, o.wait);
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
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
  const std::string what = pvc                ? "PVC " + o.pvc
                           : multipoint       ? "point-to-multipoint call to " + dests[0].text
                                              : "call to " + dests[0].text;
  const auto t0 = std::chrono::steady_clock::now();
  Status s = Status::kPending;
  if (pvc) {
    // Heard already (the HELLO wait above), or a MAC.
    pvc->peer = resolve_peer(node, pvc_peer).value_or(derived_mac(pvc_peer));
    const auto r = node.set_cm(*af, cm::co_oid::kAddPvc, cm::encode_co_pvc(*pvc));
    if (r.status != Status::kSuccess) {
      fmt::print(stderr, "coemu call: --pvc {}: OID_CO_ADD_PVC: {}\n", o.pvc, miniport::to_string(r.status));
      return 1;
    }
    s = node.make_pvc_call(*vc, pvc->rx_vci);
  } else if (multipoint) {
    auto party = node.make_multipoint_call(*vc, dests[0].node, dests[0].sap, traffic);
    s = party ? Status::kPending : party.error();
  } else {
    s = node.make_call(*vc, dests[0].node, dests[0].sap, traffic);
  }
  if (s != Status::kPending) {
    fmt::print(stderr, "coemu call: {} refused at once: {}\n", what, miniport::to_string(s));
    return 1;
  }
  // T303 and T310 bound the answer; --wait bounds our patience on top.
  if (!c.wait_event(Ev::kMakeCallComplete, wait + Seconds(40))) {
    fmt::print(stderr, "coemu call: no answer to the {}\n", what);
    return 1;
  }
  const ClientEvent done = c.event(Ev::kMakeCallComplete);
  const double setup_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  int rc = 0;
  std::vector<uint32_t> parties;  // the ones added after the first, which joined
  if (done.status != Status::kSuccess) {
    if (o.node.json)  // the text event line said it already
      fmt::print(stderr, "coemu call: {} failed: {}\n", what, status_with_cause(done.status, done.cause));
    rc = 1;
  } else {
    for (size_t i = 1; i < dests.size() && !emulator::ShutdownSignals::requested(); ++i) {
      auto party = node.add_party(*vc, dests[i].node, dests[i].sap);
      if (!party) {
        fmt::print(stderr, "coemu call: add party {}: {}\n", dests[i].text, miniport::to_string(party.error()));
        rc = 1;
        continue;
      }
      if (!c.wait_event(Ev::kAddPartyComplete, wait + Seconds(40), i - 1)) {
        fmt::print(stderr, "coemu call: no answer from party {}\n", dests[i].text);
        rc = 1;
        break;
      }
      const ClientEvent added = c.event(Ev::kAddPartyComplete, i - 1);
      if (added.status == Status::kSuccess) {
        parties.push_back(added.party);
      } else {
        if (o.node.json)
          fmt::print(stderr, "coemu call: party {} failed: {}\n", dests[i].text,
                     status_with_cause(added.status, added.cause));
        rc = 1;
      }
    }
    const Sent sent = send_packets(node, *vc, c, o);
    const bool completed = c.wait([&] { return c.ok_ + c.failed_ >= sent.packets; }, wait);
    const bool echoed = !o.expect_echo || c.wait([&] { return c.rtt_ns_.size() >= sent.packets; }, wait);
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
    const double bytes = static_cast<double>(sent.packets) * o.size;
    const double bps = sent.seconds > 0 ? bytes * 8 / sent.seconds : 0;
    if (o.node.json) {
      nlohmann::json j{{"event", "call_summary"},  {"dest", o.dests},        {"multipoint", multipoint},
                       {"parties", 1 + parties.size()}, {"setup_ms", setup_ms}, {"sent", sent.packets},
                       {"bytes", static_cast<uint64_t>(bytes)}, {"completed_ok", ok}, {"completed_failed", failed},
                       {"echoed", rtt.size()},      {"seconds", sent.seconds}, {"bits_per_s", bps}};
      if (!rtt.empty()) j["rtt_us"] = {{"p50", pct(0.5)}, {"p99", pct(0.99)}};
      fmt::print("{}\n", j.dump());
    } else {
      fmt::print("{}{}: set up in {:.2f} ms; sent {} packets of {} bytes ({}) in {:.3f} s, {}: {} completed ok, {} failed",
                 what, multipoint ? fmt::format(" ({} parties)", 1 + parties.size()) : "", setup_ms, sent.packets,
                 o.size, human_bytes(bytes), sent.seconds, human_bits_per_s(bps), ok, failed);
      if (o.expect_echo) fmt::print("; {} echoed, rtt p50 {:.1f} us, p99 {:.1f} us", rtt.size(), pct(0.5), pct(0.99));
      fmt::print("\n");
    }
    std::fflush(stdout);
    const bool cut_short = o.count >= 0 && sent.packets < static_cast<uint64_t>(o.count) && o.duration.empty();
    if (cut_short || !completed || failed || !echoed) rc = 1;
    if (const int cause = c.cleared_cause_.load(); cause >= 0) {
      const char* name = cm::cause_name(static_cast<uint8_t>(cause));
      fmt::print(stderr, "coemu call: the call was cleared by the peer or the network: cause {} ({})\n", cause,
                 name ? name : "unknown");
      rc = 1;
    }
    if (emulator::ShutdownSignals::requested()) fmt::print(stderr, "coemu call: interrupted\n");
    // R59: the parties go first; the call closes with its last one.
    for (size_t i = 0; i < parties.size(); ++i) {
      if (node.drop_party(parties[i]) != Status::kPending ||
          !c.wait_event(Ev::kDropPartyComplete, wait + Seconds(40), i)) {
        fmt::print(stderr, "coemu call: could not drop party {}\n", parties[i]);
        rc = 1;
      }
    }
    // Our close, unless the peer's close is already being answered.
    const Status cs = node.close_call(*vc);
    if (cs != Status::kPending && cs != Status::kFailure)
      fmt::print(stderr, "coemu call: close: {}\n", miniport::to_string(cs));
    if (!c.wait_event(Ev::kCloseCallComplete, wait + Seconds(40))) {
      fmt::print(stderr, "coemu call: the close did not complete\n");
      rc = 1;
    }
  }
  if (pvc) (void)node.set_cm(*af, cm::co_oid::kDeletePvc, cm::encode_co_pvc(*pvc));
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
