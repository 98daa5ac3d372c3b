#include "emulator/pcap_recorder.h"

#include <pthread.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "emulator/clock.h"
#include "emulator/signals.h"

namespace emulator {

struct PcapRecorder::Dumper {
  struct PcapClose {
    void operator()(pcap_t* p) const noexcept { pcap_close(p); }
  };
  struct DumpClose {
    void operator()(pcap_dumper_t* d) const noexcept { pcap_dump_close(d); }
  };
  std::unique_ptr<pcap_t, PcapClose> dead;
  std::unique_ptr<pcap_dumper_t, DumpClose> dumper;
};

PcapRecorder::PcapRecorder(const PcapOptions& opts) : opts_(opts) {}

Result<std::unique_ptr<PcapRecorder>> PcapRecorder::open(const PcapOptions& opts) {
  if (opts.snaplen < 64 || opts.snaplen > 262144) {
    set_last_error("pcap snaplen must be within 64..262144, got " + std::to_string(opts.snaplen));
    return miniport::fail(Status::kInvalidData);
  }
  if (opts.slots == 0 || opts.slots > (1u << 24)) {
    set_last_error("pcap ring slots must be within 1..16777216");
    return miniport::fail(Status::kInvalidData);
  }
  if (opts.path.empty()) {
    set_last_error("pcap path is empty");
    return miniport::fail(Status::kInvalidData);
  }
  std::unique_ptr<PcapRecorder> r(new PcapRecorder(opts));
  uint64_t n = 1;
  while (n < opts.slots) n <<= 1;
  r->mask_ = n - 1;
  r->slots_ = std::make_unique<Slot[]>(n);
  for (uint64_t i = 0; i < n; ++i) r->slots_[i].seq.store(i, std::memory_order_relaxed);
  r->data_.resize(n * opts.snaplen);

  r->dumper_ = std::make_unique<Dumper>();
  r->dumper_->dead.reset(
      pcap_open_dead_with_tstamp_precision(DLT_EN10MB, static_cast<int>(opts.snaplen),
                                           PCAP_TSTAMP_PRECISION_NANO));
  if (!r->dumper_->dead) {
    set_last_error("pcap_open_dead failed");
    return miniport::fail(Status::kResources);
  }
  r->dumper_->dumper.reset(opts.append && opts.path != "-"
                               ? pcap_dump_open_append(r->dumper_->dead.get(), opts.path.c_str())
                               : pcap_dump_open(r->dumper_->dead.get(), opts.path.c_str()));
  if (!r->dumper_->dumper) {
    set_last_error("pcap " + opts.path + ": " + pcap_geterr(r->dumper_->dead.get()));
    return miniport::fail(Status::kFailure);
  }
  r->wake_ = COEMU_TRY(UniqueFd::eventfd());
  if (opts.flush_on_signals) {
    ShutdownSignals::install();
    ShutdownSignals::register_flusher();
  }
  r->writer_ = std::jthread([p = r.get()] { p->run(); });
  return r;
}

PcapRecorder::~PcapRecorder() {
  stop_.store(true, std::memory_order_release);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
  if (writer_.joinable()) writer_.join();
  if (opts_.flush_on_signals) ShutdownSignals::unregister_flusher();
}

bool PcapRecorder::record(std::span<const uint8_t> frame) noexcept {
  return record(frame, wall_now());
}

bool PcapRecorder::record(std::span<const uint8_t> frame, miniport::Time wall) noexcept {
  uint64_t pos = enqueue_pos_.load(std::memory_order_relaxed);
  Slot* slot;
  for (;;) {
    slot = &slots_[pos & mask_];
    // A0: acquire pairs with the writer's R1 release that freed this slot.
    const uint64_t seq = slot->seq.load(std::memory_order_acquire);
    const auto diff = static_cast<int64_t>(seq - pos);
    if (diff == 0) {
      if (enqueue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
    } else if (diff < 0) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return false;  // full: the writer has not freed this slot yet
    } else {
      pos = enqueue_pos_.load(std::memory_order_relaxed);
    }
  }
  const auto len = static_cast<uint32_t>(frame.size());
  const uint32_t cap = std::min(len, opts_.snaplen);
  if (cap < len) truncated_.fetch_add(1, std::memory_order_relaxed);
  std::memcpy(&data_[(pos & mask_) * opts_.snaplen], frame.data(), cap);
  slot->len = len;
  slot->caplen = cap;
  slot->wall_ns = wall.count();
  recorded_.fetch_add(1, std::memory_order_relaxed);
  // R0: release publishes the bytes and header to the writer's acquire (A1).
  slot->seq.store(pos + 1, std::memory_order_release);
  return true;
}

size_t PcapRecorder::drain() noexcept {
  size_t n = 0;
  for (;;) {
    Slot& slot = slots_[dequeue_pos_ & mask_];
    // A1: pairs with the producer's R0.
    if (slot.seq.load(std::memory_order_acquire) != dequeue_pos_ + 1) break;
    pcap_pkthdr h{};
    h.ts.tv_sec = slot.wall_ns / 1'000'000'000;
    h.ts.tv_usec = slot.wall_ns % 1'000'000'000;  // nanosecond file: this field holds ns
    h.caplen = slot.caplen;
    h.len = slot.len;
    pcap_dump(reinterpret_cast<u_char*>(dumper_->dumper.get()), &h,
              &data_[(dequeue_pos_ & mask_) * opts_.snaplen]);
    // R1: hand the slot back to producers one lap later.
    slot.seq.store(dequeue_pos_ + mask_ + 1, std::memory_order_release);
    ++dequeue_pos_;
    ++n;
  }
  if (n) written_.fetch_add(n, std::memory_order_release);
  return n;
}

void PcapRecorder::flush() noexcept {
  pcap_dump_flush(dumper_->dumper.get());
  flushes_.fetch_add(1, std::memory_order_relaxed);
  flushed_upto_.store(written_.load(std::memory_order_relaxed), std::memory_order_release);
  flushed_upto_.notify_all();
}

void PcapRecorder::run() noexcept {
  pthread_setname_np(pthread_self(), "coemu-pcap");
  auto last_flush = steady_now();
  uint64_t unflushed = 0;
  const int idle_ms = 2;
  for (;;) {
    unflushed += drain();
    const bool stopping = stop_.load(std::memory_order_acquire);
    bool signalled = false;
    if (!signal_handled_ && opts_.flush_on_signals && ShutdownSignals::requested()) {
      signalled = true;
    }
    const auto now = steady_now();
    const bool want_sync = sync_requests_.load(std::memory_order_acquire) != 0;
    if (stopping || signalled || want_sync ||
        (unflushed && now - last_flush >= opts_.flush_interval)) {
      unflushed += drain();
      flush();
      unflushed = 0;
      last_flush = now;
      if (signalled) {
        signal_handled_ = true;
        ShutdownSignals::flushed_after_signal();  // may end the process (signals.h)
      }
    }
    if (stopping) return;
    pollfd fds[2] = {{wake_.get(), POLLIN, 0}, {ShutdownSignals::fd(), POLLIN, 0}};
    const nfds_t nfds = (opts_.flush_on_signals && !signal_handled_ && fds[1].fd >= 0) ? 2 : 1;
    // Producers never write the eventfd (that would be a syscall per frame), so
    // an idle writer looks again every idle_ms.
    if (::poll(fds, nfds, idle_ms) > 0 && (fds[0].revents & POLLIN)) {
      uint64_t v;
      [[maybe_unused]] ssize_t r = ::read(wake_.get(), &v, sizeof v);
    }
  }
}

void PcapRecorder::sync() {
  const uint64_t target = recorded_.load(std::memory_order_acquire);
  sync_requests_.fetch_add(1, std::memory_order_acq_rel);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
  for (;;) {
    uint64_t f = flushed_upto_.load(std::memory_order_acquire);
    if (f >= target) break;
    flushed_upto_.wait(f, std::memory_order_acquire);
  }
  sync_requests_.fetch_sub(1, std::memory_order_acq_rel);
}

PcapCounters PcapRecorder::counters() const noexcept {
  PcapCounters c;
  c.recorded = recorded_.load(std::memory_order_relaxed);
  c.written = written_.load(std::memory_order_relaxed);
  c.dropped = dropped_.load(std::memory_order_relaxed);
  c.truncated = truncated_.load(std::memory_order_relaxed);
  c.flushes = flushes_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace emulator
