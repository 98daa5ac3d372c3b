// LinkEventWatcher: carrier and up/down changes of links in one network
// namespace, from rtnetlink's RTNLGRP_LINK multicast group, delivered as
// values the node turns into NDIS link-state indications.
//
//   auto w = LinkEventWatcher::open_in(ns);
//   for (const LinkEvent& e : *w->poll(std::chrono::milliseconds(500))) ...
//
// Key link-up on carrier (IFF_LOWER_UP), not operstate: a TAP often reports
// operstate UNKNOWN while it is up and has carrier.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "emulator/netns.h"
#include "miniport/time.h"

struct nl_sock;
struct nl_msg;

namespace emulator {

struct LinkEvent {
  enum class Kind { kChanged, kRemoved };
  Kind kind = Kind::kChanged;
  int ifindex = 0;
  std::string name;
  bool up = false;       // IFF_UP
  bool carrier = false;  // IFF_LOWER_UP
  uint32_t mtu = 0;
};

class LinkEventWatcher {
 public:
  // Subscribes in the calling thread's namespace / in ns. Errors: kFailure.
  [[nodiscard]] static Result<std::unique_ptr<LinkEventWatcher>> open();
  [[nodiscard]] static Result<std::unique_ptr<LinkEventWatcher>> open_in(const Netns& ns);
  ~LinkEventWatcher();

  // Waits up to timeout for events and returns those that arrived (possibly
  // none). When the kernel dropped events because the socket overflowed
  // (ENOBUFS), `overflows` counts it and the caller should re-read link state.
  [[nodiscard]] Result<std::vector<LinkEvent>> poll(miniport::Duration timeout);
  // Asks the kernel for the current state of every link; it arrives through
  // poll() as ordinary events (so a watcher learns where things stand, not
  // only what changes later). Errors: kFailure.
  [[nodiscard]] Result<void> request_dump();
  // The socket's fd, for an epoll loop.
  [[nodiscard]] int fd() const noexcept;
  [[nodiscard]] uint64_t overflows() const noexcept { return overflows_; }

 private:
  struct SockFree {
    void operator()(nl_sock* s) const noexcept;
  };
  LinkEventWatcher() = default;
  static int on_msg(::nl_msg* msg, void* arg);
  std::unique_ptr<nl_sock, SockFree> sk_;
  std::vector<LinkEvent> pending_;
  uint64_t overflows_ = 0;
};

}  // namespace emulator
