// TapRxRing: reads kept posted on one TAP queue through io_uring, so a burst
// of received frames costs one syscall to re-arm instead of one read() each.
// (A read on a TAP through io_uring does not fail with EAGAIN when the queue
// is empty: it stays posted until a frame comes, so buffers belong to the
// ring until their read completes, and destruction must cancel and wait.)
//
//   auto rx = TapRxRing::create(tap.queue_fd(0), 32);
//   rx->post(tag, buffer); rx->submit();          // arm
//   epoll on rx->event_fd(); then
//   rx->reap([&](uint64_t tag, int res) { ... });  // res = frame length or -errno
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "emulator/unique_fd.h"

struct io_uring;

namespace emulator {

class TapRxRing {
 public:
  // Errors: kNotSupported when the kernel refuses io_uring (the caller falls
  // back to read()); kResources for the eventfd.
  [[nodiscard]] static Result<std::unique_ptr<TapRxRing>> create(int tap_fd, uint32_t depth);
  // Cancels every posted read and waits (at most 1 s) until the kernel has
  // let go of their buffers.
  ~TapRxRing();
  TapRxRing(const TapRxRing&) = delete;
  TapRxRing& operator=(const TapRxRing&) = delete;

  // Readable while completions wait to be reaped.
  [[nodiscard]] int event_fd() const noexcept { return efd_.get(); }
  // Queues a read into buf with this tag (sent by submit()). False when the
  // ring holds `depth` reads already.
  bool post(uint64_t tag, std::span<uint8_t> buf) noexcept;
  // Submits what was posted. Errors: the kernel's, as a Status.
  [[nodiscard]] Result<void> submit() noexcept;
  // Calls done(tag, res) for each completed read; returns how many.
  template <class Done>
  size_t reap(Done&& done) noexcept;
  [[nodiscard]] uint32_t posted() const noexcept { return posted_; }

 private:
  TapRxRing() = default;
  // Copies out up to n completions; returns how many.
  size_t take(uint64_t* tags, int* res, size_t n) noexcept;

  int fd_ = -1;
  uint32_t depth_ = 0;
  uint32_t posted_ = 0;
  std::unique_ptr<io_uring> ring_;
  bool ring_ok_ = false;
  UniqueFd efd_;
};

template <class Done>
size_t TapRxRing::reap(Done&& done) noexcept {
  uint64_t tags[64];
  int res[64];
  size_t total = 0;
  for (;;) {
    const size_t n = take(tags, res, 64);
    for (size_t i = 0; i < n; ++i) done(tags[i], res[i]);
    total += n;
    if (n < 64) return total;
  }
}

}  // namespace emulator
