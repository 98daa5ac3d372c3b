#include "miniport/packet_pool.h"

#include <cstdlib>
#include <new>

namespace miniport {

void PacketPool::AlignedFree::operator()(uint8_t* p) const noexcept { std::free(p); }

PacketPool::PacketPool(uint32_t count, uint32_t size)
    : count_(count),
      size_(size),
      next_(std::make_unique<std::atomic<uint32_t>[]>(count)),
      in_pool_(std::make_unique<std::atomic<uint8_t>[]>(count)),
      head_(0),
      free_(count) {
  for (uint32_t i = 0; i < count; ++i) {
    next_[i].store(i + 1 < count ? i + 1 : kNone, std::memory_order_relaxed);
    in_pool_[i].store(1, std::memory_order_relaxed);
  }
}

Result<std::unique_ptr<PacketPool>> PacketPool::create(const PacketPoolOptions& o) {
  if (o.buffers == 0 || o.buffers > (1u << 24) || o.buffer_size < 64 || o.buffer_size > (1u << 20))
    return fail(Status::kInvalidData);
  std::unique_ptr<PacketPool> p(new (std::nothrow) PacketPool(o.buffers, o.buffer_size));
  if (!p) return fail(Status::kResources);
  const size_t bytes = size_t{o.buffers} * o.buffer_size;
  void* mem = std::aligned_alloc(kCacheLine, (bytes + kCacheLine - 1) / kCacheLine * kCacheLine);
  if (!mem) return fail(Status::kResources);
  p->mem_.reset(static_cast<uint8_t*>(mem));
  return p;
}

BufRef PacketPool::try_get() noexcept {
  uint64_t head = head_.load(std::memory_order_acquire);  // A0: pairs with put()'s R0
  for (;;) {
    const auto idx = static_cast<uint32_t>(head);
    if (idx == kNone) {
      empty_.fetch_add(1, std::memory_order_relaxed);
      return {};
    }
    const uint32_t next = next_[idx].load(std::memory_order_relaxed);
    // The tag in the high half changes on every successful CAS, so a head
    // that was popped and pushed back meanwhile (ABA) fails the exchange.
    const uint64_t want = ((head >> 32) + 1) << 32 | next;
    if (head_.compare_exchange_weak(head, want, std::memory_order_acquire, std::memory_order_acquire)) {
      in_pool_[idx].store(0, std::memory_order_relaxed);
      free_.fetch_sub(1, std::memory_order_relaxed);
      gets_.fetch_add(1, std::memory_order_relaxed);
      return BufRef(this, idx, 0);
    }
  }
}

size_t PacketPool::get_burst(std::span<BufRef> out) noexcept {
  size_t n = 0;
  while (n < out.size()) {
    BufRef b = try_get();
    if (!b) break;
    out[n++] = std::move(b);
  }
  return n;
}

void PacketPool::put(uint32_t idx) noexcept {
  if (idx >= count_ || in_pool_[idx].exchange(1, std::memory_order_relaxed) == 1) {
    // Returned twice (or never ours): pushing it again would hand one buffer
    // to two owners. Count it and leave the free list intact.
    double_puts_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  uint64_t head = head_.load(std::memory_order_relaxed);
  for (;;) {
    next_[idx].store(static_cast<uint32_t>(head), std::memory_order_relaxed);
    const uint64_t want = ((head >> 32) + 1) << 32 | idx;
    // R0: publishes next_[idx] and the buffer's last contents to the next getter.
    if (head_.compare_exchange_weak(head, want, std::memory_order_release, std::memory_order_relaxed)) break;
  }
  free_.fetch_add(1, std::memory_order_relaxed);
}

PacketPoolCounters PacketPool::counters() const noexcept {
  return {gets_.load(std::memory_order_relaxed), empty_.load(std::memory_order_relaxed),
          double_puts_.load(std::memory_order_relaxed)};
}

}  // namespace miniport
