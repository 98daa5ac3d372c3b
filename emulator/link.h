// Link: what a node's miniport sends and receives Ethernet frames through. Two
// implementations: TapDevice (a Linux TAP NIC) and MemLink (an in-process wire
// for tests and for machines where no TAP can be made).
//
//   std::span<const uint8_t> frames[] = {f1, f2};
//   size_t sent = *link.send_burst(frames);     // may be < 2: back-pressure
//   RxFrame slots[32] = ...;                    // caller-owned buffers
//   size_t got = *link.recv_burst(slots);       // 0 = nothing now
//
// Each direction can be impaired (impairment.h); delayed frames are released by
// flush_due(), which the owner calls when next_deadline() passes (send and
// receive calls also release what is due). A link is used by one sending and
// one receiving thread at a time.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <span>

#include "emulator/impairment.h"
#include "emulator/unique_fd.h"

namespace emulator {

class PcapRecorder;

// One receive slot: a caller-owned buffer and, after recv_burst, the frame's
// length. A frame longer than the buffer is cut and `truncated` is set.
struct RxFrame {
  std::span<uint8_t> buf;
  size_t len = 0;
  bool truncated = false;
};

// A snapshot of a link's counters (all queues summed).
struct LinkCounters {
  uint64_t tx_frames = 0;     // frames taken by send_burst
  uint64_t tx_bytes = 0;
  uint64_t tx_errors = 0;     // frames the OS refused (counted, then dropped)
  uint64_t tx_backpressure = 0;  // send_burst calls that could not take every frame
  uint64_t rx_frames = 0;
  uint64_t rx_bytes = 0;
  uint64_t rx_truncated = 0;  // frames longer than the caller's buffer
};

// A counter with a single writer: a relaxed load and store (no locked
// read-modify-write on the fast path), safe to read from any thread.
class Counter {
 public:
  Counter& operator+=(uint64_t n) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    return *this;
  }
  Counter& operator++() noexcept { return *this += 1; }
  [[nodiscard]] uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// One queue's counters, written by that queue's sending and receiving
// threads (each field by one of them).
struct alignas(64) QueueCounters {
  Counter tx_frames, tx_bytes, tx_errors, tx_backpressure, rx_frames, rx_bytes, rx_truncated;
};

inline constexpr uint32_t kMaxQueues = 16;

class Link {
 public:
  virtual ~Link() = default;

  // Sends frames in order; returns how many were taken. Fewer than asked means
  // back-pressure: retry the rest later. Frames an impairment drops count as
  // taken. Errors: kAdapterRemoved when the device is gone; kInvalidLength for
  // an empty frame or one longer than mtu() + 14 (nothing after it is sent).
  [[nodiscard]] virtual Result<size_t> send_burst(
      std::span<const std::span<const uint8_t>> frames) = 0;

  // Receives up to slots.size() frames without blocking; 0 = none now.
  // Errors: kAdapterRemoved when the device is gone.
  [[nodiscard]] virtual Result<size_t> recv_burst(std::span<RxFrame> slots) = 0;

  // Waits until a frame may be readable, at most `timeout`. True if readable.
  [[nodiscard]] virtual Result<bool> wait_readable(miniport::Duration timeout) = 0;

  // Releases delayed frames that are due now.
  virtual void flush_due() = 0;
  // When the next delayed frame falls due, if any.
  [[nodiscard]] virtual std::optional<Time> next_deadline() const = 0;

  // Replaces this link's send-direction impairment (validated first; on error
  // nothing changes). Frames held by the old setting are released at once.
  [[nodiscard]] virtual Result<void> set_impairment(const ImpairmentConfig& cfg) = 0;
  [[nodiscard]] virtual ImpairmentCounters impairment_counters() const = 0;

  // The largest Ethernet payload (frame length minus the 14-byte header).
  [[nodiscard]] virtual uint32_t mtu() const = 0;

  // An fd that polls readable when frames may be waiting (for epoll loops).
  [[nodiscard]] virtual int rx_fd() const noexcept = 0;

  // Multi-queue links (a TAP with IFF_MULTI_QUEUE) have one fd per queue; a
  // queue is used by one sending and one receiving thread at a time. Single
  // queue links treat every queue as queue 0.
  [[nodiscard]] virtual uint32_t queues() const noexcept { return 1; }
  [[nodiscard]] virtual Result<size_t> send_burst_on(uint32_t q, std::span<const std::span<const uint8_t>> frames) {
    (void)q;
    return send_burst(frames);
  }
  [[nodiscard]] virtual Result<size_t> recv_burst_on(uint32_t q, std::span<RxFrame> slots) {
    (void)q;
    return recv_burst(slots);
  }
  [[nodiscard]] virtual int rx_fd_on(uint32_t q) const noexcept {
    (void)q;
    return rx_fd();
  }

  // Records every frame sent (as handed to send_burst, before impairments) and
  // received (as read). nullptr stops recording. The recorder must outlive
  // its use here.
  void set_recorder(PcapRecorder* r) noexcept { recorder_ = r; }
  // A snapshot, any thread.
  [[nodiscard]] LinkCounters counters() const noexcept {
    LinkCounters c;
    for (const auto& q : qc_) {
      c.tx_frames += q.tx_frames.get();
      c.tx_bytes += q.tx_bytes.get();
      c.tx_errors += q.tx_errors.get();
      c.tx_backpressure += q.tx_backpressure.get();
      c.rx_frames += q.rx_frames.get();
      c.rx_bytes += q.rx_bytes.get();
      c.rx_truncated += q.rx_truncated.get();
    }
    return c;
  }

 protected:
  PcapRecorder* recorder_ = nullptr;
  std::array<QueueCounters, kMaxQueues> qc_;
};

}  // namespace emulator
