#include "emulator/route_netlink.h"

#include <fcntl.h>
#include <linux/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>
#include <unistd.h>

#include <cstring>

namespace emulator {

namespace {

struct LinkPut {
  void operator()(rtnl_link* l) const noexcept { rtnl_link_put(l); }
};
struct AddrPut {
  void operator()(nl_addr* a) const noexcept { nl_addr_put(a); }
};
struct RtAddrPut {
  void operator()(rtnl_addr* a) const noexcept { rtnl_addr_put(a); }
};
struct CacheFree {
  void operator()(nl_cache* c) const noexcept { nl_cache_free(c); }
};
using LinkPtr = std::unique_ptr<rtnl_link, LinkPut>;

miniport::Unexpected nl_fail(std::string_view what, int err) {
  err = err < 0 ? -err : err;
  set_last_error(std::string(what) + ": " + nl_geterror(err));
  switch (err) {
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV: return miniport::fail(Status::kAdapterRemoved);
    case NLE_EXIST: return miniport::fail(Status::kNotAccepted);
    case NLE_INVAL:
    case NLE_RANGE:
    case NLE_MSGSIZE: return miniport::fail(Status::kInvalidData);
    case NLE_OPNOTSUPP: return miniport::fail(Status::kNotSupported);
    case NLE_NOMEM: return miniport::fail(Status::kResources);
    default: return miniport::fail(Status::kFailure);
  }
}

LinkInfo to_info(rtnl_link* l) {
  LinkInfo i;
  i.ifindex = rtnl_link_get_ifindex(l);
  if (const char* n = rtnl_link_get_name(l)) i.name = n;
  if (const char* k = rtnl_link_get_type(l)) i.kind = k;
  i.mtu = rtnl_link_get_mtu(l);
  if (nl_addr* a = rtnl_link_get_addr(l); a && nl_addr_get_len(a) == 6)
    std::memcpy(i.mac.bytes.data(), nl_addr_get_binary_addr(a), 6);
  const unsigned flags = rtnl_link_get_flags(l);
  i.up = flags & IFF_UP;
  i.lower_up = flags & IFF_LOWER_UP;
  i.master = rtnl_link_get_master(l);
  return i;
}

}  // namespace

void RouteNetlink::SockFree::operator()(nl_sock* s) const noexcept { nl_socket_free(s); }

RouteNetlink::RouteNetlink(RouteNetlink&&) noexcept = default;
RouteNetlink& RouteNetlink::operator=(RouteNetlink&&) noexcept = default;
RouteNetlink::~RouteNetlink() = default;

Result<RouteNetlink> RouteNetlink::open() {
  std::unique_ptr<nl_sock, SockFree> sk(nl_socket_alloc());
  if (!sk) {
    set_last_error("nl_socket_alloc failed");
    return miniport::fail(Status::kResources);
  }
  if (int e = nl_connect(sk.get(), NETLINK_ROUTE); e < 0) return nl_fail("netlink connect", e);
  // Close-on-exec, so `ip` or tcpdump started by a tool does not inherit it.
  ::fcntl(nl_socket_get_fd(sk.get()), F_SETFD, FD_CLOEXEC);
  return RouteNetlink(std::move(sk));
}

Result<RouteNetlink> RouteNetlink::open_in(const Netns& ns) {
  return run_in(ns, [] { return open(); });
}

Result<LinkInfo> RouteNetlink::get_link(std::string_view name) {
  rtnl_link* l = nullptr;
  const std::string n(name);
  if (int e = rtnl_link_get_kernel(sk_.get(), 0, n.c_str(), &l); e < 0) return nl_fail("link " + n, e);
  LinkPtr hold(l);
  return to_info(l);
}

Result<std::vector<LinkInfo>> RouteNetlink::list_links() {
  nl_cache* c = nullptr;
  if (int e = rtnl_link_alloc_cache(sk_.get(), AF_UNSPEC, &c); e < 0) return nl_fail("list links", e);
  std::unique_ptr<nl_cache, CacheFree> hold(c);
  std::vector<LinkInfo> out;
  for (nl_object* o = nl_cache_get_first(c); o; o = nl_cache_get_next(o))
    out.push_back(to_info(reinterpret_cast<rtnl_link*>(o)));
  return out;
}

namespace {
// Fetches `name` and applies the changes that `edit` makes to an empty link.
template <class Edit>
Result<void> change_link(nl_sock* sk, std::string_view name, std::string_view what, Edit&& edit) {
  const std::string n(name);
  rtnl_link* orig = nullptr;
  if (int e = rtnl_link_get_kernel(sk, 0, n.c_str(), &orig); e < 0) return nl_fail("link " + n, e);
  LinkPtr hold_orig(orig);
  LinkPtr chg(rtnl_link_alloc());
  if (!chg) return nl_fail(what, NLE_NOMEM);
  COEMU_TRY(edit(chg.get()));
  if (int e = rtnl_link_change(sk, orig, chg.get(), 0); e < 0)
    return nl_fail(std::string(what) + " " + n, e);
  return {};
}
}  // namespace

Result<void> RouteNetlink::set_up(std::string_view name, bool up) {
  return change_link(sk_.get(), name, up ? "set up" : "set down", [&](rtnl_link* c) -> Result<void> {
    if (up) rtnl_link_set_flags(c, IFF_UP);
    else rtnl_link_unset_flags(c, IFF_UP);
    return {};
  });
}

Result<void> RouteNetlink::set_mtu(std::string_view name, uint32_t mtu) {
  auto r = change_link(sk_.get(), name, "set mtu " + std::to_string(mtu),
                       [&](rtnl_link* c) -> Result<void> {
                         rtnl_link_set_mtu(c, mtu);
                         return {};
                       });
  if (!r && r.error() == Status::kInvalidData) {
    // The kernel says only "invalid argument"; name the usual reason.
    set_last_error(last_error() + " (outside the device's minimum..maximum; a TAP allows 68..65521, " +
                   "that is frames up to 65535 bytes)");
  }
  return r;
}

Result<void> RouteNetlink::set_mac(std::string_view name, const MacAddress& mac) {
  return change_link(sk_.get(), name, "set mac " + mac.to_string(), [&](rtnl_link* c) -> Result<void> {
    std::unique_ptr<nl_addr, AddrPut> a(nl_addr_build(AF_LLC, mac.bytes.data(), 6));
    if (!a) return nl_fail("nl_addr_build", NLE_NOMEM);
    rtnl_link_set_addr(c, a.get());
    return {};
  });
}

Result<void> RouteNetlink::move_to(std::string_view name, const Netns& ns) {
  return change_link(sk_.get(), name, "move to netns", [&](rtnl_link* c) -> Result<void> {
    rtnl_link_set_ns_fd(c, ns.fd());
    return {};
  });
}

Result<void> RouteNetlink::add_address(std::string_view name, std::string_view cidr) {
  LinkInfo li = COEMU_TRY(get_link(name));
  nl_addr* local = nullptr;
  const std::string c(cidr);
  if (int e = nl_addr_parse(c.c_str(), AF_UNSPEC, &local); e < 0 || !local) {
    set_last_error("bad address '" + c + "'");
    return miniport::fail(Status::kInvalidAddress);
  }
  std::unique_ptr<nl_addr, AddrPut> hold_local(local);
  if (nl_addr_get_family(local) != AF_INET && nl_addr_get_family(local) != AF_INET6) {
    set_last_error("bad address '" + c + "': not IPv4 or IPv6");
    return miniport::fail(Status::kInvalidAddress);
  }
  std::unique_ptr<rtnl_addr, RtAddrPut> a(rtnl_addr_alloc());
  rtnl_addr_set_ifindex(a.get(), li.ifindex);
  if (int e = rtnl_addr_set_local(a.get(), local); e < 0) return nl_fail("address " + c, e);
  int e = rtnl_addr_add(sk_.get(), a.get(), 0);
  if (e == -NLE_EXIST) return {};  // already there: applying a config twice is fine
  if (e < 0) return nl_fail("add address " + c + " to " + std::string(name), e);
  return {};
}

Result<std::vector<std::string>> RouteNetlink::addresses(std::string_view name) {
  LinkInfo li = COEMU_TRY(get_link(name));
  nl_cache* c = nullptr;
  if (int e = rtnl_addr_alloc_cache(sk_.get(), &c); e < 0) return nl_fail("list addresses", e);
  std::unique_ptr<nl_cache, CacheFree> hold(c);
  std::vector<std::string> out;
  for (nl_object* o = nl_cache_get_first(c); o; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    if (rtnl_addr_get_ifindex(a) != li.ifindex) continue;
    char buf[INET6_ADDRSTRLEN + 8];
    out.emplace_back(nl_addr2str(rtnl_addr_get_local(a), buf, sizeof buf));
  }
  return out;
}

Result<void> RouteNetlink::add_bridge(std::string_view name) {
  const std::string n(name);
  if (int e = rtnl_link_bridge_add(sk_.get(), n.c_str()); e < 0) return nl_fail("add bridge " + n, e);
  return {};
}

Result<void> RouteNetlink::add_veth(std::string_view name, std::string_view peer, const Netns* peer_ns) {
  const std::string n(name), p(peer);
  // Not rtnl_link_veth_add(): it puts the peer in the namespace of a pid, and
  // our process's main thread may live in another namespace than this socket.
  LinkPtr link(rtnl_link_veth_alloc());
  if (!link) return nl_fail("add veth " + n, NLE_NOMEM);
  rtnl_link_set_name(link.get(), n.c_str());
  rtnl_link* other = rtnl_link_veth_get_peer(link.get());  // owned by link
  rtnl_link_set_name(other, p.c_str());
  if (peer_ns) rtnl_link_set_ns_fd(other, peer_ns->fd());
  rtnl_link_put(other);  // veth_get_peer took a reference
  if (int e = rtnl_link_add(sk_.get(), link.get(), NLM_F_CREATE | NLM_F_EXCL); e < 0)
    return nl_fail("add veth " + n + "/" + p, e);
  return {};
}

Result<void> RouteNetlink::enslave(std::string_view bridge, std::string_view port) {
  LinkInfo b = COEMU_TRY(get_link(bridge));
  LinkInfo p = COEMU_TRY(get_link(port));
  if (int e = rtnl_link_enslave_ifindex(sk_.get(), b.ifindex, p.ifindex); e < 0)
    return nl_fail("enslave " + p.name + " to " + b.name, e);
  return {};
}

Result<void> RouteNetlink::delete_link(std::string_view name) {
  const std::string n(name);
  rtnl_link* l = nullptr;
  int e = rtnl_link_get_kernel(sk_.get(), 0, n.c_str(), &l);
  if (e == -NLE_OBJ_NOTFOUND || e == -NLE_NODEV) return {};
  if (e < 0) return nl_fail("link " + n, e);
  LinkPtr hold(l);
  e = rtnl_link_delete(sk_.get(), l);
  if (e < 0 && e != -NLE_OBJ_NOTFOUND && e != -NLE_NODEV) return nl_fail("delete link " + n, e);
  return {};
}

}  // namespace emulator
