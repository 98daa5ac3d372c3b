// MemLink: an in-process point-to-point wire with the Link interface. Two ends
// are made together; what one sends the other receives, in order, subject to
// each direction's impairments. Used by tests, by benchmarks' baselines and
// where the process may not create a TAP.
//
//   auto [a, b] = MemLink::make_pair({.mtu = 1500});
//   (void)a->send_burst(frames);
//   (void)b->recv_burst(slots);
//
// Each direction is a bounded byte ring carved at creation and guarded by a
// mutex, so sending and receiving allocate nothing; a full ring is
// back-pressure (send_burst takes fewer), never a silent drop. Readiness is an
// eventfd, so a MemLink can sit in an epoll loop like a TAP. (This is the
// stand-in wire; the lock-free rings live in the miniport and the data path.)
#pragma once

#include <memory>
#include <utility>

#include "emulator/link.h"

namespace emulator {

struct MemLinkOptions {
  uint32_t mtu = 1500;
  uint32_t capacity = 4096;    // frames queued per direction before back-pressure
  size_t bytes = 8u << 20;     // bytes queued per direction (raised to hold 4 MTU frames)
};

class MemLink final : public Link {
 public:
  // Errors: kInvalidData for mtu outside 68..65535 or capacity 0; kResources
  // when no eventfd can be made.
  [[nodiscard]] static Result<std::pair<std::unique_ptr<MemLink>, std::unique_ptr<MemLink>>>
  make_pair(const MemLinkOptions& opts);

  ~MemLink() override;

  [[nodiscard]] Result<size_t> send_burst(
      std::span<const std::span<const uint8_t>> frames) override;
  [[nodiscard]] Result<size_t> recv_burst(std::span<RxFrame> slots) override;
  [[nodiscard]] Result<bool> wait_readable(miniport::Duration timeout) override;
  void flush_due() override;
  [[nodiscard]] std::optional<Time> next_deadline() const override;
  [[nodiscard]] Result<void> set_impairment(const ImpairmentConfig& cfg) override;
  [[nodiscard]] ImpairmentCounters impairment_counters() const override;
  [[nodiscard]] uint32_t mtu() const override { return mtu_; }

  // Readable while frames wait to be received (cleared when drained).
  [[nodiscard]] int rx_fd() const noexcept override;

  struct Channel;  // one direction: queue, impairer, eventfd

 private:
  MemLink(std::shared_ptr<Channel> tx, std::shared_ptr<Channel> rx, uint32_t mtu);
  std::shared_ptr<Channel> tx_;
  std::shared_ptr<Channel> rx_;
  uint32_t mtu_;
};

}  // namespace emulator
