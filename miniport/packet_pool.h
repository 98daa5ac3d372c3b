// PacketPool: fixed-size packet buffers carved once at start-up, handed out
// and taken back lock-free from any thread. In steady state the fast path
// allocates nothing: a frame lives in a pool buffer from the client's send (or
// the TAP read) to the completion (or the client's return).
//
//   auto pool = PacketPool::create({.buffers = 4096, .buffer_size = 2048});
//   BufRef b = (*pool)->try_get();   // empty BufRef when exhausted (counted)
//   std::memcpy(b.data() + kFramePayloadOffset, payload, n);
//   uint32_t idx = b.release();      // into a ring as a plain index...
//   BufRef again = (*pool)->adopt(idx, len);  // ...and back into an owner
//
// Buffers hold a whole Ethernet frame; a DATA payload starts at
// kFramePayloadOffset (14-byte Ethernet + 8-byte DATA header).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "miniport/frame.h"
#include "miniport/ring.h"
#include "miniport/status.h"

namespace miniport {

inline constexpr size_t kFramePayloadOffset = kEthHeaderLen + kDataHeaderLen;

class PacketPool;

// Move-only owner of one pool buffer; returns it to the pool when destroyed.
class BufRef {
 public:
  BufRef() noexcept = default;
  BufRef(BufRef&& o) noexcept : pool_(o.pool_), idx_(o.idx_), len_(o.len_) { o.pool_ = nullptr; }
  BufRef& operator=(BufRef&& o) noexcept {
    if (this != &o) {
      reset();
      pool_ = o.pool_;
      idx_ = o.idx_;
      len_ = o.len_;
      o.pool_ = nullptr;
    }
    return *this;
  }
  BufRef(const BufRef&) = delete;
  BufRef& operator=(const BufRef&) = delete;
  ~BufRef() { reset(); }

  [[nodiscard]] explicit operator bool() const noexcept { return pool_ != nullptr; }
  [[nodiscard]] uint8_t* data() const noexcept;
  [[nodiscard]] size_t capacity() const noexcept;
  // Bytes in use (the frame length), set by whoever fills the buffer.
  [[nodiscard]] uint32_t size() const noexcept { return len_; }
  void set_size(uint32_t n) noexcept { len_ = n; }
  [[nodiscard]] std::span<uint8_t> bytes() const noexcept { return {data(), len_}; }
  [[nodiscard]] uint32_t index() const noexcept { return idx_; }

  // Gives up ownership without returning the buffer; adopt() takes it back.
  [[nodiscard]] uint32_t release() noexcept {
    pool_ = nullptr;
    return idx_;
  }
  void reset() noexcept;

 private:
  friend class PacketPool;
  BufRef(PacketPool* p, uint32_t idx, uint32_t len) noexcept : pool_(p), idx_(idx), len_(len) {}
  PacketPool* pool_ = nullptr;
  uint32_t idx_ = 0;
  uint32_t len_ = 0;
};

struct PacketPoolOptions {
  uint32_t buffers = 4096;      // how many (1..16M)
  uint32_t buffer_size = 2048;  // bytes each (64..1 MiB); 65536 + 22 for 64 KB payloads
};

struct PacketPoolCounters {
  uint64_t gets = 0;
  uint64_t empty = 0;        // try_get found no free buffer
  uint64_t double_puts = 0;  // a buffer returned twice (a bug in the caller; ignored safely)
};

class PacketPool {
 public:
  // Errors: kInvalidData for sizes out of range; kResources when the memory
  // cannot be had.
  [[nodiscard]] static Result<std::unique_ptr<PacketPool>> create(const PacketPoolOptions& opts);

  // A free buffer, or an empty BufRef when none is left (counted in `empty`).
  [[nodiscard]] BufRef try_get() noexcept;
  // Fills out with up to out.size() buffers; returns how many (all-or-some).
  size_t get_burst(std::span<BufRef> out) noexcept;
  // Takes back ownership of an index from BufRef::release().
  [[nodiscard]] BufRef adopt(uint32_t idx, uint32_t len = 0) noexcept { return BufRef(this, idx, len); }

  [[nodiscard]] uint8_t* buffer(uint32_t idx) const noexcept { return mem_.get() + size_t{idx} * size_; }
  [[nodiscard]] uint32_t buffer_size() const noexcept { return size_; }
  [[nodiscard]] uint32_t buffers() const noexcept { return count_; }
  // Free buffers now (exact when nobody is getting or putting).
  [[nodiscard]] uint32_t available() const noexcept { return free_.load(std::memory_order_relaxed); }
  [[nodiscard]] PacketPoolCounters counters() const noexcept;

 private:
  friend class BufRef;
  PacketPool(uint32_t count, uint32_t size);
  void put(uint32_t idx) noexcept;

  static constexpr uint32_t kNone = 0xFFFFFFFF;
  const uint32_t count_;
  const uint32_t size_;
  struct AlignedFree {
    void operator()(uint8_t* p) const noexcept;
  };
  std::unique_ptr<uint8_t[], AlignedFree> mem_;
  std::unique_ptr<std::atomic<uint32_t>[]> next_;    // free-list links
  std::unique_ptr<std::atomic<uint8_t>[]> in_pool_;  // canary: 1 while free
  // Treiber stack head: (ABA tag << 32) | index. LIFO keeps hot buffers in cache.
  alignas(kCacheLine) std::atomic<uint64_t> head_;
  std::atomic<uint32_t> free_;
  alignas(kCacheLine) std::atomic<uint64_t> gets_{0};
  std::atomic<uint64_t> empty_{0};
  std::atomic<uint64_t> double_puts_{0};
};

inline uint8_t* BufRef::data() const noexcept { return pool_ ? pool_->buffer(idx_) : nullptr; }
inline size_t BufRef::capacity() const noexcept { return pool_ ? pool_->buffer_size() : 0; }
inline void BufRef::reset() noexcept {
  if (pool_) pool_->put(idx_);
  pool_ = nullptr;
}

}  // namespace miniport
