#include "cm/neighbors.h"

namespace cm {

NeighborTable::NeighborTable(std::string my_address, const MacAddress& my_mac, uint32_t incarnation,
                             const NeighborConfig& cfg)
    : my_address_(std::move(my_address)), my_mac_(my_mac), incarnation_(incarnation), cfg_(cfg) {}

void NeighborTable::on_hello(const MacAddress& from, uint32_t incarnation, const Hello& h, Time now,
                             std::vector<NeighborEvent>& out) {
  if (from == my_mac_) return;  // our own HELLO reflected back
  const std::string address(h.node_address.begin(), h.node_address.end());
  // Two nodes, one address: a configuration error each side reports. The
  // address stays with whoever held it first (or with us).
  if (address == my_address_) {
    ++duplicates_;
    out.push_back({NeighborEventKind::kDuplicateAddress, address, from, my_mac_});
    return;
  }
  if (auto it = by_address_.find(address); it != by_address_.end() && it->second != from) {
    ++duplicates_;
    out.push_back({NeighborEventKind::kDuplicateAddress, address, from, it->second});
    return;
  }
  auto it = by_mac_.find(from);
  if (it != by_mac_.end() && it->second.address != address) {
    // The node behind this MAC took another name: the old one is gone.
    out.push_back({NeighborEventKind::kDown, it->second.address, from, {}});
    by_address_.erase(it->second.address);
    by_mac_.erase(it);
    it = by_mac_.end();
  }
  if (it == by_mac_.end()) {
    Neighbor n{address, from, incarnation, h.mtu, h.link_speed, now};
    by_mac_.emplace(from, n);
    by_address_.emplace(address, from);
    out.push_back({NeighborEventKind::kUp, address, from, {}});
    return;
  }
  Neighbor& n = it->second;
  if (n.incarnation != incarnation) {
    n.incarnation = incarnation;
    out.push_back({NeighborEventKind::kRestarted, address, from, {}});
  }
  n.mtu = h.mtu;
  n.link_speed = h.link_speed;
  n.last_heard = now;
}

void NeighborTable::heard(const MacAddress& from, Time now) {
  if (auto it = by_mac_.find(from); it != by_mac_.end() && it->second.last_heard < now) it->second.last_heard = now;
}

void NeighborTable::on_timer(Time now, std::vector<NeighborEvent>& out) {
  for (auto it = by_mac_.begin(); it != by_mac_.end();) {
    if (now >= it->second.last_heard + cfg_.dead_interval) {
      out.push_back({NeighborEventKind::kDown, it->second.address, it->first, {}});
      by_address_.erase(it->second.address);
      it = by_mac_.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<Time> NeighborTable::next_deadline() const {
  std::optional<Time> d = last_hello_ ? *last_hello_ + cfg_.hello_interval : Time(0);
  for (const auto& [mac, n] : by_mac_) {
    const Time dead = n.last_heard + cfg_.dead_interval;
    if (dead < *d) d = dead;
  }
  return d;
}

std::optional<MacAddress> NeighborTable::lookup(std::string_view address) const {
  auto it = by_address_.find(address);
  if (it == by_address_.end()) return std::nullopt;
  return it->second;
}

const Neighbor* NeighborTable::by_mac(const MacAddress& mac) const {
  auto it = by_mac_.find(mac);
  return it == by_mac_.end() ? nullptr : &it->second;
}

Hello NeighborTable::hello() const {
  Hello h;
  h.node_address = {reinterpret_cast<const uint8_t*>(my_address_.data()), my_address_.size()};
  h.mtu = cfg_.mtu;
  if (cfg_.link_speed) h.link_speed = cfg_.link_speed;
  return h;
}

}  // namespace cm
