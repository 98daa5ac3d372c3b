// Two call managers on an explicit clock and a wire that can lose frames or
// be cut: the rig of the call manager's tests.
#pragma once

#include <gtest/gtest.h>

#include <deque>
#include <utility>
#include <vector>

#include "cm/call_manager.h"

namespace cm {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Ev = ClientEvent::Kind;

inline const MacAddress kMacA = MacAddress::local(0xa);
inline const MacAddress kMacB = MacAddress::local(0xb);
inline const SapSpec kSap42{1, {0, 42}};

// Two call managers on one link, an explicit clock, and a wire that can
// lose frames (fixed-seed) or be cut.
struct Lab {
  // cfg_a / cfg_b carry the options under test; names, MACs and
  // incarnations are filled in.
  explicit Lab(CmConfig cfg_a = {}, CmConfig cfg_b = {})
      : a(named(cfg_a, "alpha", kMacA, 0xA1), vcs_a), b(named(cfg_b, "beta", kMacB, 0xB1), vcs_b) {}
  static CmConfig named(CmConfig c, const char* name, MacAddress mac, uint32_t inc) {
    c.node_address = name;
    c.mac = mac;
    c.incarnation = inc;
    return c;
  }
  miniport::VcTable vcs_a, vcs_b;
  CallManager a, b;
  Time now{0};
  double loss = 0;
  bool b_dead = false;
  bool b_mute = false;  // beta hears everything, nothing it sends arrives
  bool keep_oids = false;  // record the CM's OID requests (R13/R83) too; the other tests look past them
  std::vector<ClientEvent> ev_a, ev_b;
  std::deque<std::pair<MacAddress, SigOut>> wire;  // (source, frame)
  uint64_t seed = 7;

  double rnd() {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(seed >> 11) * 0x1.0p-53;
  }
  void take(const MacAddress& from, CmOutput& out) {
    for (auto& f : out.frames) wire.emplace_back(from, std::move(f));
    for (auto& e : out.events)
      if (keep_oids || e.kind != Ev::kOidRequest) (from == kMacA ? ev_a : ev_b).push_back(std::move(e));
    out = {};
  }
  // Delivers every frame on the wire (and what that produces), then runs
  // timers that are due; advances the clock to the next deadline when idle.
  void pump(Time until) {
    CmOutput out;
    while (now <= until) {
      while (!wire.empty()) {
        auto [from, f] = std::move(wire.front());
        wire.pop_front();
        if (rnd() < loss) continue;
        if ((b_dead || b_mute) && from == kMacB) continue;
        for (CallManager* to : {&a, &b}) {
          const MacAddress self = to == &a ? kMacA : kMacB;
          if (self == from || (f.dst != self && f.dst != MacAddress::broadcast())) continue;
          if (to == &b && b_dead) continue;
          to->on_sig_frame(from, f.payload, now, out);
          take(self, out);
        }
      }
      a.on_timer(now, out);
      take(kMacA, out);
      if (!b_dead) {
        b.on_timer(now, out);
        take(kMacB, out);
      }
      if (!wire.empty()) continue;
      std::optional<Time> next = a.next_deadline();
      if (auto d = b.next_deadline(); !b_dead && d && (!next || *d < *next)) next = d;
      if (!next) break;
      now = std::max(now + Time(1), *next);
    }
  }
  void start() {
    CmOutput out;
    a.start(now, out);
    take(kMacA, out);
    b.start(now, out);
    take(kMacB, out);
    pump(now + milliseconds(10));
  }
  // alpha (client 1) calls beta:42, where client 2 listens; returns alpha's
  // VC and, once beta was offered the call, beta's.
  std::pair<VcId, VcId> offer() {
    VcId vc = *a.create_vc(a.open_af(1, kCoemuAf)->id);
    (void)*b.register_sap(b.open_af(2, kCoemuAf)->id, kSap42);
    CmOutput out;
    EXPECT_EQ(a.make_call(vc, "beta", kSap42, now, out), Status::kPending);
    take(kMacA, out);
    pump(now + milliseconds(50));
    const ClientEvent* in = last(ev_b, Ev::kIncomingCall);
    return {vc, in ? in->vc : VcId{}};
  }
  void answer(VcId vc_b, Status s) {
    CmOutput out;
    EXPECT_EQ(b.incoming_call_complete(vc_b, s, now, out), Status::kSuccess);
    take(kMacB, out);
    pump(now + milliseconds(50));
  }
  // `side` closes the call on vc; then the wire and timers run for 50 ms.
  void close(CallManager& side, VcId vc) {
    CmOutput out;
    EXPECT_EQ(side.close_call(vc, now, out), Status::kPending);
    take(&side == &a ? kMacA : kMacB, out);
    pump(now + milliseconds(50));
  }
  static std::vector<Ev> kinds(const std::vector<ClientEvent>& ev) {
    std::vector<Ev> k;
    for (const auto& e : ev) k.push_back(e.kind);
    return k;
  }
  const ClientEvent* last(const std::vector<ClientEvent>& ev, Ev k) {
    for (auto it = ev.rbegin(); it != ev.rend(); ++it)
      if (it->kind == k) return &*it;
    return nullptr;
  }
};

// beta's client takes an incoming call; returns beta's AF, SAP and VC.
struct Answered {
  AfOpenId af;    // beta's
  AfOpenId af_a;  // alpha's
  SapId sap;
  VcId vc_a, vc_b;
};
inline Answered answered_call(Lab& l) {
  Answered r;
  r.af = l.b.open_af(2, kCoemuAf)->id;
  r.sap = *l.b.register_sap(r.af, kSap42);
  r.af_a = l.a.open_af(1, kCoemuAf)->id;
  r.vc_a = *l.a.create_vc(r.af_a);
  CmOutput out;
  EXPECT_EQ(l.a.make_call(r.vc_a, "beta", kSap42, l.now, out), Status::kPending);
  l.take(kMacA, out);
  l.pump(l.now + milliseconds(50));
  r.vc_b = l.last(l.ev_b, Ev::kIncomingCall)->vc;
  l.answer(r.vc_b, Status::kSuccess);
  return r;
}

}  // namespace cm
