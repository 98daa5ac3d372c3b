#include "emulator/mem_link.h"

#include <atomic>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "emulator/clock.h"
#include "emulator/pcap_recorder.h"

namespace emulator {

// One direction: a byte ring of length-prefixed frames carved once, so the
// bypass path copies bytes and never allocates.
struct MemLink::Channel {
  std::mutex mu;
  std::vector<uint8_t> ring;  // records: u32 length, bytes, padded to 4
  uint64_t wpos = 0, rpos = 0;  // free-running byte positions
  uint32_t frames = 0;
  uint32_t capacity = 0;        // frame limit
  std::optional<Impairer> impairer;  // empty = bypass
  ImpairmentCounters retired;        // counters of impairers replaced earlier
  uint64_t overflow = 0;             // released impaired copies that found the ring full
  UniqueFd ready;                    // eventfd: readable while frames wait
  bool signalled = false;
  // frames, and whether an impairer holds some back, for a receiver to look
  // at without the lock: a receiver polling an empty channel under the lock
  // kept the sender waiting on the mutex (a futex sleep of ~40 us).
  std::atomic<uint32_t> readable{0};
  std::atomic<bool> impaired{false};

  static constexpr uint32_t kSkip = 0xFFFFFFFF;
  static size_t rounded(size_t n) { return (n + 3) & ~size_t{3}; }

  // Callers hold mu. False when the frame does not fit now.
  bool push(std::span<const uint8_t> f) {
    const size_t size = ring.size();
    const size_t need = 4 + rounded(f.size());
    size_t at = wpos % size;
    const size_t tail_room = size - at;
    const size_t pad = tail_room < need ? tail_room : 0;  // skip to the start
    if (frames >= capacity || size - (wpos - rpos) < pad + need) return false;
    if (pad) {
      const uint32_t skip = kSkip;
      std::memcpy(&ring[at], &skip, 4);
      wpos += pad;
      at = 0;
    }
    const auto len = static_cast<uint32_t>(f.size());
    std::memcpy(&ring[at], &len, 4);
    std::memcpy(&ring[at + 4], f.data(), f.size());
    wpos += need;
    ++frames;
    readable.store(frames, std::memory_order_release);
    if (!signalled) {
      uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(ready.get(), &one, sizeof one);
      signalled = true;
    }
    return true;
  }
  // Callers hold mu and checked frames > 0. Copies into out (cut to fit);
  // returns the frame's full length.
  size_t pop(std::span<uint8_t> out, size_t& copied) {
    size_t at = rpos % ring.size();
    uint32_t len;
    std::memcpy(&len, &ring[at], 4);
    if (len == kSkip) {
      rpos += ring.size() - at;
      at = 0;
      std::memcpy(&len, &ring[at], 4);
    }
    copied = std::min<size_t>(len, out.size());
    std::memcpy(out.data(), &ring[at + 4], copied);
    rpos += 4 + rounded(len);
    --frames;
    readable.store(frames, std::memory_order_release);
    return len;
  }
  void release_due(Time now) {
    if (impairer)
      impairer->release(now, [&](std::span<const uint8_t> f) {
        if (!push(f)) ++overflow;
      });
  }
  size_t in_flight() const { return frames + (impairer ? impairer->pending() : 0); }
};

MemLink::MemLink(std::shared_ptr<Channel> tx, std::shared_ptr<Channel> rx, uint32_t mtu)
    : tx_(std::move(tx)), rx_(std::move(rx)), mtu_(mtu) {}

MemLink::~MemLink() = default;

Result<std::pair<std::unique_ptr<MemLink>, std::unique_ptr<MemLink>>> MemLink::make_pair(
    const MemLinkOptions& opts) {
  if (opts.mtu < 68 || opts.mtu > 65535) {
    set_last_error("memory link MTU must be within 68..65535, got " + std::to_string(opts.mtu));
    return miniport::fail(Status::kInvalidData);
  }
  if (opts.capacity == 0) {
    set_last_error("memory link capacity must be at least 1");
    return miniport::fail(Status::kInvalidData);
  }
  auto ab = std::make_shared<Channel>();
  auto ba = std::make_shared<Channel>();
  ab->ready = COEMU_TRY(UniqueFd::eventfd());
  ba->ready = COEMU_TRY(UniqueFd::eventfd());
  ab->capacity = ba->capacity = opts.capacity;
  // Room for the frame limit at a typical size, and always for a few of the
  // largest frames.
  const size_t bytes = std::max<size_t>(opts.bytes, 4 * (size_t{opts.mtu} + 14 + 8));
  ab->ring.resize(bytes);
  ba->ring.resize(bytes);
  std::unique_ptr<MemLink> a(new MemLink(ab, ba, opts.mtu));
  std::unique_ptr<MemLink> b(new MemLink(ba, ab, opts.mtu));
  return std::make_pair(std::move(a), std::move(b));
}

Result<size_t> MemLink::send_burst(std::span<const std::span<const uint8_t>> frames) {
  const Time now = steady_now();
  std::lock_guard lock(tx_->mu);
  tx_->release_due(now);
  size_t n = 0;
  for (const auto& f : frames) {
    if (f.empty() || f.size() > size_t{mtu_} + 14) {
      set_last_error("frame of " + std::to_string(f.size()) + " bytes does not fit MTU " +
                     std::to_string(mtu_));
      if (n) break;
      return miniport::fail(Status::kInvalidLength);
    }
    if (tx_->impairer) {
      if (tx_->in_flight() >= tx_->capacity) {
        ++qc_[0].tx_backpressure;
        break;
      }
      if (recorder_) recorder_->record(f);
      tx_->impairer->submit(f, now);
    } else {
      if (!tx_->push(f)) {
        ++qc_[0].tx_backpressure;
        break;
      }
      if (recorder_) recorder_->record(f);
    }
    ++qc_[0].tx_frames;
    qc_[0].tx_bytes += f.size();
    ++n;
  }
  tx_->release_due(now);
  return n;
}

Result<size_t> MemLink::recv_burst(std::span<RxFrame> slots) {
  // Nothing waiting and nothing held back to release: no need for the lock.
  // (A frame pushed just after this look is seen on the next call; the
  // eventfd stays readable for a receiver about to sleep.)
  if (rx_->readable.load(std::memory_order_acquire) == 0 && !rx_->impaired.load(std::memory_order_acquire)) return 0;
  std::lock_guard lock(rx_->mu);
  rx_->release_due(steady_now());
  size_t n = 0;
  while (n < slots.size() && rx_->frames > 0) {
    RxFrame& s = slots[n];
    size_t copied = 0;
    const size_t full = rx_->pop(s.buf, copied);
    s.len = copied;
    s.truncated = copied < full;
    if (s.truncated) ++qc_[0].rx_truncated;
    if (recorder_) recorder_->record(std::span<const uint8_t>(s.buf.data(), copied));
    ++qc_[0].rx_frames;
    qc_[0].rx_bytes += full;
    ++n;
  }
  if (rx_->frames == 0 && rx_->signalled) {
    uint64_t v;
    [[maybe_unused]] ssize_t r = ::read(rx_->ready.get(), &v, sizeof v);
    rx_->signalled = false;
  }
  return n;
}

Result<bool> MemLink::wait_readable(miniport::Duration timeout) {
  const Time deadline = steady_now() + timeout;
  for (;;) {
    Time now = steady_now();
    Time wake = deadline;
    {
      std::lock_guard lock(rx_->mu);
      rx_->release_due(now);
      if (rx_->frames > 0) return true;
      if (rx_->impairer) {
        if (auto d = rx_->impairer->next_deadline(); d && *d < wake) wake = *d;
      }
    }
    if (now >= deadline) return false;
    pollfd p{rx_->ready.get(), POLLIN, 0};
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(wake - now).count();
    if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(ms, 0))) < 0 && errno != EINTR)
      return miniport::fail(record_errno("poll", errno));
  }
}

void MemLink::flush_due() {
  std::lock_guard lock(tx_->mu);
  tx_->release_due(steady_now());
}

std::optional<Time> MemLink::next_deadline() const {
  // Asked every I/O round: without an impairer there is nothing to lock for.
  if (!tx_->impaired.load(std::memory_order_acquire)) return std::nullopt;
  std::lock_guard lock(tx_->mu);
  return tx_->impairer ? tx_->impairer->next_deadline() : std::nullopt;
}

Result<void> MemLink::set_impairment(const ImpairmentConfig& cfg) {
  COEMU_TRY(cfg.validate());
  std::lock_guard lock(tx_->mu);
  if (tx_->impairer) {
    // Frames already held keep their fate: move them to the queue as they
    // fall due by releasing everything now (ordering is kept).
    tx_->impairer->release(Time::max(), [&](std::span<const uint8_t> f) {
      if (!tx_->push(f)) ++tx_->overflow;
    });
    tx_->retired = (tx_->retired + tx_->impairer->counters());
    tx_->impairer.reset();
    tx_->impaired.store(false, std::memory_order_release);
  }
  if (cfg.active()) {
    tx_->impairer.emplace(cfg);
    tx_->impaired.store(true, std::memory_order_release);
  }
  return {};
}

ImpairmentCounters MemLink::impairment_counters() const {
  std::lock_guard lock(tx_->mu);
  ImpairmentCounters c = tx_->impairer ? (tx_->retired + tx_->impairer->counters()) : tx_->retired;
  c.dropped_queue += tx_->overflow;  // duplicates released into a full ring
  return c;
}

int MemLink::rx_fd() const noexcept { return rx_->ready.get(); }

}  // namespace emulator
