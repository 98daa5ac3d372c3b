// Qsbr: quiescent-state-based reclamation, so I/O threads can read the VC
// table with no lock while the control side changes it. A reader announces a
// quiescent point (it holds no VC pointer) between batches; the control side
// frees or reuses what it retired at epoch e once every reader has announced
// one after e, or is offline (blocked in epoll, holding nothing).
//
//   reader (I/O thread):  for (;;) { process(batch); qsbr.quiescent(me); }
//   control:              retire x at e = qsbr.advance(); later if (qsbr.passed(e)) free(x);
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "miniport/ring.h"

namespace miniport {

class Qsbr {
 public:
  static constexpr uint32_t kMaxReaders = 64;

  // Control side, before the reader starts. Returns its id, or kMaxReaders
  // when all are taken.
  uint32_t register_reader() noexcept {
    const uint32_t id = readers_.fetch_add(1, std::memory_order_acq_rel);
    if (id >= kMaxReaders) {
      readers_.fetch_sub(1, std::memory_order_acq_rel);
      return kMaxReaders;
    }
    seen_[id].v.store(kOffline, std::memory_order_release);
    return id;
  }

  // Reader: "I hold no VC pointer now." Cheap: one load, one store.
  void quiescent(uint32_t r) noexcept {
    // A: pairs with advance(); whatever was changed before epoch g is visible.
    seen_[r].v.store(global_.load(std::memory_order_acquire), std::memory_order_release);
  }
  // Reader: about to block; it holds nothing until online().
  void offline(uint32_t r) noexcept { seen_[r].v.store(kOffline, std::memory_order_release); }
  // Reader: back from blocking, before touching any VC.
  void online(uint32_t r) noexcept {
    seen_[r].v.store(global_.load(std::memory_order_acquire), std::memory_order_relaxed);
    // An RMW on the epoch orders this reader against advance(): if it comes
    // after, it acquires advance()'s release and sees the change retired
    // there; if before, advance() acquires it and passed() sees our `seen`
    // (older than the epoch, so not passed). No fence: TSan models RMWs.
    global_.fetch_add(0, std::memory_order_acq_rel);
  }

  // Control: opens a new epoch and returns it; retire what you just unlinked
  // with this number.
  uint64_t advance() noexcept { return global_.fetch_add(1, std::memory_order_acq_rel) + 1; }

  // Control: true when every reader passed a quiescent point at or after e.
  [[nodiscard]] bool passed(uint64_t e) const noexcept {
    const uint32_t n = readers_.load(std::memory_order_acquire);
    for (uint32_t i = 0; i < n; ++i) {
      const uint64_t s = seen_[i].v.load(std::memory_order_acquire);
      if (s != kOffline && s < e) return false;
    }
    return true;
  }

 private:
  static constexpr uint64_t kOffline = ~uint64_t{0};
  struct alignas(kCacheLine) Seen {
    std::atomic<uint64_t> v{kOffline};
  };
  alignas(kCacheLine) std::atomic<uint64_t> global_{1};
  std::atomic<uint32_t> readers_{0};
  Seen seen_[kMaxReaders];
};

}  // namespace miniport
