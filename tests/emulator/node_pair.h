// Two data-path nodes joined by a link, with a handler that verifies every
// received payload in order and counts completions: the integration rig for
// PVC traffic. Nothing in the handler allocates.
#pragma once

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include "emulator/data_path.h"
#include "miniport/byte_order.h"

namespace coemu_test {

using emulator::RxPacket;
using emulator::TxCompletion;
using miniport::Status;

// Payload: u32 seq, then bytes derived from it.
inline size_t fill_payload(uint8_t* p, uint32_t seq, size_t len) {
  miniport::store_be32(p, seq);
  for (size_t i = 4; i < len; ++i) p[i] = static_cast<uint8_t>(seq * 7 + i);
  return len;
}

inline bool payload_ok(std::span<const uint8_t> p, uint32_t seq) {
  if (p.size() < 4 || miniport::load_be32(p.data()) != seq) return false;
  for (size_t i = 4; i < p.size(); ++i)
    if (p[i] != static_cast<uint8_t>(seq * 7 + i)) return false;
  return true;
}

class Checker : public emulator::DataPathHandler {
 public:
  void on_receive(std::span<RxPacket> pkts) override {
    for (RxPacket& p : pkts) {
      const uint32_t want = next_.load(std::memory_order_relaxed);
      if (payload_ok(p.payload(), want) && p.payload().size() == expected_len(want)) {
        next_.store(want + 1, std::memory_order_release);
      } else {
        bad_.fetch_add(1, std::memory_order_relaxed);
      }
      if (hold_ && held_count_ < kHold) held_[held_count_++] = std::move(p);
    }
    received_.fetch_add(pkts.size(), std::memory_order_release);
  }
  void on_send_complete(std::span<const TxCompletion> done) override {
    for (const auto& c : done) {
      if (c.status == Status::kSuccess) ok_.fetch_add(1, std::memory_order_relaxed);
      else if (c.status == Status::kVcNotActivated) not_activated_.fetch_add(1, std::memory_order_relaxed);
      else if (c.status == Status::kRequestAborted) aborted_.fetch_add(1, std::memory_order_relaxed);
      else other_.fetch_add(1, std::memory_order_relaxed);
    }
    completed_.fetch_add(done.size(), std::memory_order_release);
  }
  void on_signaling(std::span<const uint8_t>) override { sig_.fetch_add(1); }
  void on_signaling_done() override {
    // Each batch's SIG frames are all handed up before the hook runs.
    if (sig_.load() == sig_at_done_.load()) bad_done_.fetch_add(1);
    sig_at_done_.store(sig_.load());
    sig_done_.fetch_add(1);
  }
  void on_status(const miniport::StatusIndication& i) override {
    if (i.vc.valid()) {
      vc_statuses_.fetch_add(1);
      return;
    }
    link_up_.store(i.link_up);
    statuses_.fetch_add(1);
  }

  static size_t expected_len(uint32_t seq) { return 4 + (seq * 131) % 1489; }  // 4..1492

  // Keep up to kHold received packets instead of returning them at once.
  void hold(bool on) { hold_ = on; }
  void release_held() {
    for (size_t i = 0; i < held_count_; ++i) held_[i].release();
    held_count_ = 0;
  }

  static constexpr size_t kHold = 16;
  std::atomic<uint32_t> next_{0};
  std::atomic<uint64_t> received_{0}, bad_{0}, completed_{0}, ok_{0}, not_activated_{0}, aborted_{0}, other_{0};
  std::atomic<uint64_t> sig_{0}, statuses_{0}, vc_statuses_{0}, sig_done_{0}, sig_at_done_{0}, bad_done_{0};
  std::atomic<bool> link_up_{false};
  bool hold_ = false;
  RxPacket held_[kHold];
  size_t held_count_ = 0;
};

// Waits (bounded) until pred() holds. It naps between looks rather than
// yielding: a yield loop is a core-eating stream of syscalls that starves the
// nodes' threads on a 2-core machine.
template <class Pred>
bool wait_for(Pred pred, std::chrono::seconds limit = std::chrono::seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

// Sends `count` frames with sequence numbers from `first` on vc, retrying on
// back-pressure and on an empty pool (bounded by `limit`). Returns how many
// were taken.
inline uint64_t send_seq(emulator::DataPath& dp, miniport::VcId vc, uint32_t first, uint64_t count,
                         std::chrono::seconds limit = std::chrono::seconds(120)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  uint64_t taken = 0;
  emulator::TxPacket batch[32];
  while (taken < count && std::chrono::steady_clock::now() < deadline) {
    size_t n = 0;
    while (n < 32 && taken + n < count) {
      emulator::TxPacket& p = batch[n];
      if (!p.buf) p.buf = dp.alloc();
      if (!p.buf) break;  // pool empty: completions will refill it
      const auto seq = static_cast<uint32_t>(first + taken + n);
      const size_t len = Checker::expected_len(seq);
      fill_payload(p.buf.data() + miniport::kFramePayloadOffset, seq, len);
      p.buf.set_size(static_cast<uint32_t>(len));
      p.cookie = seq;
      ++n;
    }
    const size_t t = n ? dp.send(vc, std::span(batch, n)) : 0;
    // Packets not taken keep their buffers; slide them to the front.
    for (size_t i = t; i < n; ++i) batch[i - t] = std::move(batch[i]);
    taken += t;
    if (t < n || n == 0) std::this_thread::yield();
  }
  for (auto& p : batch) p.buf.reset();
  return taken;
}

}  // namespace coemu_test
