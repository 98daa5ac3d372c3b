// A raw AF_PACKET socket on one device of the test's namespace: sends
// hand-made Ethernet frames into a node's TAP and reads what the node sends
// back. The rig of the hostile-input tests (a forged peer on the wire).
#pragma once

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "emulator/unique_fd.h"
#include "miniport/frame.h"
#include "miniport/mac_address.h"

namespace coemu_test {

class FrameInjector {
 public:
  // Bound to `ifname`, the kernel side of a TAP: what it sends, the TAP's
  // reader receives. nullopt (with errno) when the socket cannot be made.
  static std::optional<FrameInjector> open(const std::string& ifname) {
    const unsigned idx = ::if_nametoindex(ifname.c_str());
    if (idx == 0) return std::nullopt;
    emulator::UniqueFd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
    if (!fd) return std::nullopt;
    sockaddr_ll sa{};
    sa.sll_family = AF_PACKET;
    sa.sll_protocol = htons(ETH_P_ALL);
    sa.sll_ifindex = static_cast<int>(idx);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return std::nullopt;
    const int one = 1;  // our own frames are not answers
    (void)::setsockopt(fd.get(), SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    const int big = 8 << 20;  // a flood's answers arrive faster than a test thread reads
    (void)::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    return FrameInjector(std::move(fd), static_cast<int>(idx));
  }

  bool send(std::span<const uint8_t> frame) {
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = ifindex_;
    to.sll_halen = 6;
    std::copy_n(frame.data(), std::min<size_t>(6, frame.size()), to.sll_addr);
    return ::sendto(fd_.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) ==
           static_cast<ssize_t>(frame.size());
  }

  // Ethernet header + payload, as one frame.
  static std::vector<uint8_t> frame(const miniport::MacAddress& dst, const miniport::MacAddress& src,
                                    uint16_t ether_type, std::span<const uint8_t> payload) {
    std::vector<uint8_t> f(miniport::kEthHeaderLen + payload.size());
    std::copy(dst.bytes.begin(), dst.bytes.end(), f.begin());
    std::copy(src.bytes.begin(), src.bytes.end(), f.begin() + 6);
    f[12] = static_cast<uint8_t>(ether_type >> 8);
    f[13] = static_cast<uint8_t>(ether_type);
    std::copy(payload.begin(), payload.end(), f.begin() + miniport::kEthHeaderLen);
    return f;
  }

  // The next frame from `src` with `ether_type` within `limit` (others are
  // skipped); returns its Ethernet payload. One thread at a time (send() may
  // run beside it).
  std::optional<std::vector<uint8_t>> receive(const miniport::MacAddress& src, uint16_t ether_type,
                                              std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::vector<uint8_t>& buf = buf_;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                              std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      const ssize_t n = ::recv(fd_.get(), buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < static_cast<ssize_t>(miniport::kEthHeaderLen)) continue;
      auto eth = miniport::decode_eth(std::span(buf).first(static_cast<size_t>(n)));
      if (!eth || !(eth->src == src) || eth->ether_type != ether_type) continue;
      return std::vector<uint8_t>(buf.begin() + miniport::kEthHeaderLen, buf.begin() + n);
    }
  }

 private:
  FrameInjector(emulator::UniqueFd fd, int ifindex) : fd_(std::move(fd)), ifindex_(ifindex) {}
  emulator::UniqueFd fd_;
  int ifindex_;
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(65536);  // receive() is one thread's
};

}  // namespace coemu_test
