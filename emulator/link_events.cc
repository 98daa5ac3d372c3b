#include "emulator/link_events.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/rtnetlink.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/rtnl.h>
#include <poll.h>

#include <cerrno>
#include <utility>

namespace emulator {

void LinkEventWatcher::SockFree::operator()(nl_sock* s) const noexcept { nl_socket_free(s); }

LinkEventWatcher::~LinkEventWatcher() = default;

int LinkEventWatcher::on_msg(nl_msg* msg, void* arg) {
  auto* self = static_cast<LinkEventWatcher*>(arg);
  const nlmsghdr* h = nlmsg_hdr(msg);
  if (h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK) return NL_OK;
  std::pair<LinkEventWatcher*, bool> ctx(self, h->nlmsg_type == RTM_DELLINK);
  nl_msg_parse(
      msg,
      [](nl_object* o, void* a) {
        auto* ctx = static_cast<std::pair<LinkEventWatcher*, bool>*>(a);
        auto* l = reinterpret_cast<rtnl_link*>(o);
        LinkEvent e;
        e.kind = ctx->second ? LinkEvent::Kind::kRemoved : LinkEvent::Kind::kChanged;
        e.ifindex = rtnl_link_get_ifindex(l);
        if (const char* n = rtnl_link_get_name(l)) e.name = n;
        const unsigned flags = rtnl_link_get_flags(l);
        e.up = flags & IFF_UP;
        e.carrier = flags & IFF_LOWER_UP;
        e.mtu = rtnl_link_get_mtu(l);
        ctx->first->pending_.push_back(std::move(e));
      },
      &ctx);
  return NL_OK;
}

Result<std::unique_ptr<LinkEventWatcher>> LinkEventWatcher::open() {
  std::unique_ptr<LinkEventWatcher> w(new LinkEventWatcher());
  w->sk_.reset(nl_socket_alloc());
  if (!w->sk_) {
    set_last_error("nl_socket_alloc failed");
    return miniport::fail(Status::kResources);
  }
  nl_sock* sk = w->sk_.get();
  // Notifications carry no sequence numbers of ours.
  nl_socket_disable_seq_check(sk);
  nl_socket_modify_cb(sk, NL_CB_VALID, NL_CB_CUSTOM, &LinkEventWatcher::on_msg, w.get());
  if (int e = nl_connect(sk, NETLINK_ROUTE); e < 0) {
    set_last_error(std::string("netlink connect: ") + nl_geterror(e));
    return miniport::fail(Status::kFailure);
  }
  if (int e = nl_socket_add_memberships(sk, RTNLGRP_LINK, 0); e < 0) {
    set_last_error(std::string("join RTNLGRP_LINK: ") + nl_geterror(e));
    return miniport::fail(Status::kFailure);
  }
  nl_socket_set_nonblocking(sk);
  ::fcntl(nl_socket_get_fd(sk), F_SETFD, FD_CLOEXEC);
  return w;
}

Result<std::unique_ptr<LinkEventWatcher>> LinkEventWatcher::open_in(const Netns& ns) {
  return run_in(ns, [] { return open(); });
}

Result<void> LinkEventWatcher::request_dump() {
  if (int e = nl_rtgen_request(sk_.get(), RTM_GETLINK, AF_UNSPEC, NLM_F_DUMP); e < 0) {
    set_last_error(std::string("RTM_GETLINK dump: ") + nl_geterror(e));
    return miniport::fail(Status::kFailure);
  }
  return {};
}

int LinkEventWatcher::fd() const noexcept { return nl_socket_get_fd(sk_.get()); }

Result<std::vector<LinkEvent>> LinkEventWatcher::poll(miniport::Duration timeout) {
  pollfd p{fd(), POLLIN, 0};
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(timeout).count();
  int r = ::poll(&p, 1, static_cast<int>(ms));
  if (r < 0 && errno != EINTR) return miniport::fail(record_errno("poll netlink", errno));
  for (;;) {
    int e = nl_recvmsgs_default(sk_.get());
    if (e == -NLE_AGAIN) break;
    if (e >= 0) continue;
    if (e == -NLE_NOMEM) {
      // ENOBUFS from the kernel: events were lost; the caller re-reads state.
      ++overflows_;
      continue;
    }
    if (e < 0) {
      set_last_error(std::string("netlink receive: ") + nl_geterror(e));
      return miniport::fail(Status::kFailure);
    }
  }
  std::vector<LinkEvent> out;
  out.swap(pending_);
  return out;
}

}  // namespace emulator
