// Any number of call managers on one link with an explicit clock: the rig of
// the point-to-multipoint tests (a root and leaves on different nodes).
#pragma once

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cm/call_manager.h"

namespace cm {

struct NetNode {
  std::string name;
  MacAddress mac;
  miniport::VcTable vcs;
  std::unique_ptr<CallManager> cm;
  std::vector<ClientEvent> ev;
  bool dead = false;  // hears nothing and says nothing

  const ClientEvent* last(ClientEvent::Kind k) const {
    for (auto it = ev.rbegin(); it != ev.rend(); ++it)
      if (it->kind == k) return &*it;
    return nullptr;
  }
  size_t count(ClientEvent::Kind k) const {
    size_t n = 0;
    for (const auto& e : ev) n += e.kind == k;
    return n;
  }
};

class Net {
 public:
  // Node i is named names[i], with MAC local(i + 1) and client id 1.
  explicit Net(const std::vector<std::string>& names, CmConfig cfg = {}) {
    for (size_t i = 0; i < names.size(); ++i) {
      auto n = std::make_unique<NetNode>();
      n->name = names[i];
      n->mac = MacAddress::local(static_cast<uint32_t>(i + 1));
      CmConfig c = cfg;
      c.node_address = names[i];
      c.mac = n->mac;
      c.incarnation = static_cast<uint32_t>(0x100 + i);
      n->cm = std::make_unique<CallManager>(c, n->vcs);
      nodes_.push_back(std::move(n));
    }
    CmOutput out;
    for (auto& n : nodes_) {
      n->cm->start(now, out);
      take(*n, out);
    }
    pump(now + std::chrono::milliseconds(10));
  }

  NetNode& operator[](size_t i) { return *nodes_[i]; }
  size_t size() const { return nodes_.size(); }

  void take(NetNode& from, CmOutput& out) {
    for (auto& f : out.frames) wire_.emplace_back(from.mac, std::move(f));
    for (auto& e : out.events) from.ev.push_back(std::move(e));
    out = {};
  }
  // Delivers frames (and what they cause) and runs due timers until `until`.
  void pump(Time until) {
    CmOutput out;
    while (now <= until) {
      while (!wire_.empty()) {
        auto [from, f] = std::move(wire_.front());
        wire_.pop_front();
        if (node_of(from).dead) continue;
        for (auto& n : nodes_) {
          if (n->dead || n->mac == from || (f.dst != n->mac && f.dst != MacAddress::broadcast())) continue;
          n->cm->on_sig_frame(from, f.payload, now, out);
          take(*n, out);
        }
      }
      std::optional<Time> next;
      for (auto& n : nodes_) {
        if (n->dead) continue;
        n->cm->on_timer(now, out);
        take(*n, out);
        if (auto d = n->cm->next_deadline(); d && (!next || *d < *next)) next = d;
      }
      if (!wire_.empty()) continue;
      // The clock stops at `until`: timers due later run in a later pump.
      if (!next || *next > until) {
        now = std::max(now, until);
        break;
      }
      now = std::max(now + Time(1), *next);
    }
  }
  void settle() { pump(now + std::chrono::milliseconds(50)); }

  Time now{0};

 private:
  NetNode& node_of(const MacAddress& mac) {
    for (auto& n : nodes_)
      if (n->mac == mac) return *n;
    return *nodes_.front();
  }
  std::vector<std::unique_ptr<NetNode>> nodes_;
  std::deque<std::pair<MacAddress, SigOut>> wire_;
};

}  // namespace cm
