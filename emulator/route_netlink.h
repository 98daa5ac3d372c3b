// RouteNetlink: link configuration over rtnetlink with libnl-3, bound to the
// network namespace in which it was opened: up/down, MTU, MAC, addresses,
// bridges, veths, enslaving, moving to a namespace, deleting.
//
//   auto nl = RouteNetlink::open_in(ns);
//   nl->set_mtu("coe0", 9000); nl->set_up("coe0", true);
//   LinkInfo li = *nl->get_link("coe0");
//
// A libnl socket is not thread-safe: one RouteNetlink belongs to one thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "emulator/netns.h"
#include "miniport/mac_address.h"

struct nl_sock;

namespace emulator {

using miniport::MacAddress;

struct LinkInfo {
  int ifindex = 0;
  std::string name;
  std::string kind;  // "tun", "veth", "bridge", ... ("" for a plain device)
  uint32_t mtu = 0;
  MacAddress mac;
  bool up = false;        // IFF_UP: administratively up
  bool lower_up = false;  // IFF_LOWER_UP: carrier present
  int master = 0;         // ifindex of the bridge it is enslaved to, 0 if none
};

class RouteNetlink {
 public:
  // Opens a socket in the calling thread's namespace. Errors: kFailure.
  [[nodiscard]] static Result<RouteNetlink> open();
  // Opens a socket that lives in ns (made on a thread inside it).
  [[nodiscard]] static Result<RouteNetlink> open_in(const Netns& ns);

  RouteNetlink(RouteNetlink&&) noexcept;
  RouteNetlink& operator=(RouteNetlink&&) noexcept;
  ~RouteNetlink();

  // Errors for every call below: kAdapterRemoved when no such link,
  // kInvalidData for a value the kernel rejects (an MTU too big), kNotAccepted
  // when it already exists, kFailure otherwise; last_error() names link and cause.
  [[nodiscard]] Result<LinkInfo> get_link(std::string_view name);
  [[nodiscard]] Result<std::vector<LinkInfo>> list_links();
  [[nodiscard]] Result<void> set_up(std::string_view name, bool up);
  [[nodiscard]] Result<void> set_mtu(std::string_view name, uint32_t mtu);
  [[nodiscard]] Result<void> set_mac(std::string_view name, const MacAddress& mac);
  // Adds "10.0.0.1/24" or "fd00::1/64"; adding one that is there is success.
  [[nodiscard]] Result<void> add_address(std::string_view name, std::string_view cidr);
  [[nodiscard]] Result<std::vector<std::string>> addresses(std::string_view name);
  // Moves the link into ns; it arrives there down, without addresses.
  [[nodiscard]] Result<void> move_to(std::string_view name, const Netns& ns);
  [[nodiscard]] Result<void> add_bridge(std::string_view name);
  // Creates a veth pair: `name` here, `peer` born directly inside peer_ns
  // (here when nullptr), so no half-made pair is ever stranded in between.
  [[nodiscard]] Result<void> add_veth(std::string_view name, std::string_view peer,
                                      const Netns* peer_ns = nullptr);
  [[nodiscard]] Result<void> enslave(std::string_view bridge, std::string_view port);
  // Deletes a link; a missing one is success.
  [[nodiscard]] Result<void> delete_link(std::string_view name);

 private:
  struct SockFree {
    void operator()(nl_sock* s) const noexcept;
  };
  explicit RouteNetlink(std::unique_ptr<nl_sock, SockFree> sk) : sk_(std::move(sk)) {}
  std::unique_ptr<nl_sock, SockFree> sk_;
};

}  // namespace emulator
