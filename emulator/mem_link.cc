#include "emulator/mem_link.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <mutex>
#include <vector>

#include "emulator/clock.h"
#include "emulator/pcap_recorder.h"

namespace emulator {

struct MemLink::Channel {
  std::mutex mu;
  std::deque<std::vector<uint8_t>> queue;
  std::optional<Impairer> impairer;  // empty = bypass
  ImpairmentCounters retired;        // counters of impairers replaced earlier
  UniqueFd ready;                    // eventfd: 1 while queue is not empty
  uint32_t capacity = 0;
  bool signalled = false;

  // Callers hold mu.
  void push(std::span<const uint8_t> f) {
    queue.emplace_back(f.begin(), f.end());
    if (!signalled) {
      uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(ready.get(), &one, sizeof one);
      signalled = true;
    }
  }
  void release_due(Time now) {
    if (impairer) impairer->release(now, [&](std::span<const uint8_t> f) { push(f); });
  }
  size_t in_flight() const { return queue.size() + (impairer ? impairer->pending() : 0); }
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
    if (tx_->in_flight() >= tx_->capacity) {
      ++counters_.tx_backpressure;
      break;
    }
    if (recorder_) recorder_->record(f);
    if (tx_->impairer) {
      tx_->impairer->submit(f, now);
    } else {
      tx_->push(f);
    }
    ++counters_.tx_frames;
    counters_.tx_bytes += f.size();
    ++n;
  }
  tx_->release_due(now);
  return n;
}

Result<size_t> MemLink::recv_burst(std::span<RxFrame> slots) {
  std::lock_guard lock(rx_->mu);
  rx_->release_due(steady_now());
  size_t n = 0;
  while (n < slots.size() && !rx_->queue.empty()) {
    auto& f = rx_->queue.front();
    RxFrame& s = slots[n];
    const size_t len = std::min(f.size(), s.buf.size());
    std::memcpy(s.buf.data(), f.data(), len);
    s.len = len;
    s.truncated = len < f.size();
    if (s.truncated) ++counters_.rx_truncated;
    if (recorder_) recorder_->record(std::span<const uint8_t>(f));
    ++counters_.rx_frames;
    counters_.rx_bytes += f.size();
    rx_->queue.pop_front();
    ++n;
  }
  if (rx_->queue.empty() && rx_->signalled) {
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
      if (!rx_->queue.empty()) return true;
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
  std::lock_guard lock(tx_->mu);
  return tx_->impairer ? tx_->impairer->next_deadline() : std::nullopt;
}

Result<void> MemLink::set_impairment(const ImpairmentConfig& cfg) {
  COEMU_TRY(cfg.validate());
  std::lock_guard lock(tx_->mu);
  if (tx_->impairer) {
    // Frames already held keep their fate: move them to the queue as they
    // fall due by releasing everything now (ordering is kept).
    tx_->impairer->release(Time::max(), [&](std::span<const uint8_t> f) { tx_->push(f); });
    tx_->retired = (tx_->retired + tx_->impairer->counters());
    tx_->impairer.reset();
  }
  if (cfg.active()) tx_->impairer.emplace(cfg);
  return {};
}

ImpairmentCounters MemLink::impairment_counters() const {
  std::lock_guard lock(tx_->mu);
  return tx_->impairer ? (tx_->retired + tx_->impairer->counters()) : tx_->retired;
}

int MemLink::readable_fd() const noexcept { return rx_->ready.get(); }

}  // namespace emulator
