// NeighborTable: who is on the link, from HELLOs (PROTOCOL.md 3.1): node
// address -> MAC, incarnation, MTU and link speed; peers unheard for the dead
// interval go down; a new incarnation means the peer restarted; two MACs
// announcing one address is reported (on both nodes, since each hears the
// other). Sans-I/O: fed HELLOs and the time, returns events, and says when
// our own HELLO is due.
//
//   NeighborTable nt("alpha", my_mac, my_inc, {});
//   nt.on_hello(src_mac, hdr.incarnation, hello, now, events);
//   if (auto mac = nt.lookup("beta")) call(*mac);
//   if (nt.hello_due(now)) { send(nt.hello_body()); nt.hello_sent(now); }
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cm/sig_codec.h"
#include "miniport/mac_address.h"
#include "miniport/time.h"

namespace cm {

using miniport::Duration;
using miniport::MacAddress;
using miniport::Time;

struct NeighborConfig {
  Duration hello_interval = std::chrono::seconds(1);
  Duration dead_interval = std::chrono::milliseconds(3500);
  uint16_t mtu = 1500;           // announced in our HELLO
  uint64_t link_speed = 0;       // announced when non-zero
};

struct Neighbor {
  std::string address;
  MacAddress mac;
  uint32_t incarnation = 0;
  std::optional<uint16_t> mtu;
  std::optional<uint64_t> link_speed;
  Time last_heard{0};
};

enum class NeighborEventKind : uint8_t {
  kUp,                // first HELLO from this node
  kDown,              // unheard for the dead interval: clear its calls (cause 41)
  kRestarted,         // same MAC, new incarnation: clear its calls (cause 41)
  kDuplicateAddress,  // `mac` announces an address that `other` (or we) already hold
};

struct NeighborEvent {
  NeighborEventKind kind;
  std::string address;
  MacAddress mac;
  MacAddress other;  // kDuplicateAddress: the MAC that held the address first (ours if it is ours)
};

class NeighborTable {
 public:
  NeighborTable(std::string my_address, const MacAddress& my_mac, uint32_t incarnation,
                const NeighborConfig& cfg = {});

  // A decoded HELLO from `from` whose SIG header carried `incarnation`.
  void on_hello(const MacAddress& from, uint32_t incarnation, const Hello& h, Time now,
                std::vector<NeighborEvent>& out);
  // Any valid SIG frame from a known peer shows it is alive ("unheard" in
  // 3.1 means no frame at all, not only no HELLO).
  void heard(const MacAddress& from, Time now);
  // Peers unheard for the dead interval go down.
  void on_timer(Time now, std::vector<NeighborEvent>& out);
  // The next time something is due: a peer's dead interval or our HELLO.
  [[nodiscard]] std::optional<Time> next_deadline() const;

  [[nodiscard]] std::optional<MacAddress> lookup(std::string_view address) const;
  [[nodiscard]] const Neighbor* by_mac(const MacAddress& mac) const;
  [[nodiscard]] size_t size() const noexcept { return by_mac_.size(); }
  [[nodiscard]] uint32_t incarnation() const noexcept { return incarnation_; }
  // Every peer heard and not timed out, by MAC.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [mac, n] : by_mac_) f(n);
  }

  // Our HELLO: due at start and every hello_interval.
  [[nodiscard]] bool hello_due(Time now) const noexcept { return !last_hello_ || now >= *last_hello_ + cfg_.hello_interval; }
  void hello_sent(Time now) noexcept { last_hello_ = now; }
  // The HELLO body (IEs) to send; it views this table's address.
  [[nodiscard]] Hello hello() const;
  [[nodiscard]] uint64_t duplicates_seen() const noexcept { return duplicates_; }
  [[nodiscard]] uint64_t hellos_dropped() const noexcept { return dropped_; }
  void count_dropped_hello() noexcept { ++dropped_; }

 private:
  struct MacLess {
    bool operator()(const MacAddress& a, const MacAddress& b) const { return a.bytes < b.bytes; }
  };
  std::string my_address_;
  MacAddress my_mac_;
  uint32_t incarnation_;
  NeighborConfig cfg_;
  std::map<MacAddress, Neighbor, MacLess> by_mac_;
  std::map<std::string, MacAddress, std::less<>> by_address_;
  std::optional<Time> last_hello_;
  uint64_t duplicates_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace cm
