// Bounded lock-free rings for the fast path: SpscRing (one producer, one
// consumer) and MpscRing (many producers, one consumer). Power-of-two
// capacity, free-running indices masked on access, producer and consumer
// state on separate cache lines, burst operations.
//
//   SpscRing<uint32_t> r(1024);
//   if (!r.try_push(7)) { /* full: back-pressure */ }
//   uint32_t out[32]; size_t n = r.pop_burst(out);   // 0..32
//
// *_burst moves up to n items and returns how many (dpdk's naming); nothing
// here allocates after construction, locks, or throws.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <type_traits>

namespace miniport {

// g++ 12 warns on std::hardware_destructive_interference_size in headers.
inline constexpr size_t kCacheLine = 64;

inline constexpr size_t round_up_pow2(size_t n) noexcept {
  size_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

template <class T>
class SpscRing {
  static_assert(std::is_nothrow_move_assignable_v<T> && std::is_default_constructible_v<T>);

 public:
  // Capacity is rounded up to a power of two (at least 2).
  explicit SpscRing(size_t capacity)
      : mask_(round_up_pow2(capacity < 2 ? 2 : capacity) - 1), slots_(std::make_unique<T[]>(mask_ + 1)) {}
  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  [[nodiscard]] size_t capacity() const noexcept { return mask_ + 1; }

  // Producer only. False when full.
  [[nodiscard]] bool try_push(T&& v) noexcept {
    const size_t head = head_.load(std::memory_order_relaxed);
    if (head - tail_cache_ > mask_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);  // A0: pairs with the consumer's R1
      if (head - tail_cache_ > mask_) return false;
    }
    slots_[head & mask_] = std::move(v);
    head_.store(head + 1, std::memory_order_release);  // R0: publishes the slot
    return true;
  }
  [[nodiscard]] bool try_push(const T& v) noexcept {
    T copy = v;
    return try_push(std::move(copy));
  }

  // Producer only. Moves up to items.size() items from the front; returns how many.
  size_t push_burst(std::span<T> items) noexcept {
    const size_t head = head_.load(std::memory_order_relaxed);
    size_t free = mask_ + 1 - (head - tail_cache_);
    if (free < items.size()) {
      tail_cache_ = tail_.load(std::memory_order_acquire);  // A0
      free = mask_ + 1 - (head - tail_cache_);
    }
    const size_t n = items.size() < free ? items.size() : free;
    for (size_t i = 0; i < n; ++i) slots_[(head + i) & mask_] = std::move(items[i]);
    if (n) head_.store(head + n, std::memory_order_release);  // R0
    return n;
  }

  // Consumer only. False when empty.
  [[nodiscard]] bool try_pop(T& out) noexcept {
    const size_t tail = tail_.load(std::memory_order_relaxed);
    if (tail == head_cache_) {
      head_cache_ = head_.load(std::memory_order_acquire);  // A1: pairs with the producer's R0
      if (tail == head_cache_) return false;
    }
    out = std::move(slots_[tail & mask_]);
    tail_.store(tail + 1, std::memory_order_release);  // R1: frees the slot
    return true;
  }

  // Consumer only. Moves up to out.size() items; returns how many.
  size_t pop_burst(std::span<T> out) noexcept {
    const size_t tail = tail_.load(std::memory_order_relaxed);
    size_t avail = head_cache_ - tail;
    if (avail < out.size()) {
      head_cache_ = head_.load(std::memory_order_acquire);  // A1
      avail = head_cache_ - tail;
    }
    const size_t n = out.size() < avail ? out.size() : avail;
    for (size_t i = 0; i < n; ++i) out[i] = std::move(slots_[(tail + i) & mask_]);
    if (n) tail_.store(tail + n, std::memory_order_release);  // R1
    return n;
  }

  // Either side; exact only when the other side is idle.
  [[nodiscard]] size_t size_approx() const noexcept {
    return head_.load(std::memory_order_acquire) - tail_.load(std::memory_order_acquire);
  }
  [[nodiscard]] bool empty_approx() const noexcept { return size_approx() == 0; }

 private:
  const size_t mask_;
  std::unique_ptr<T[]> slots_;
  alignas(kCacheLine) std::atomic<size_t> head_{0};  // written by the producer
  size_t tail_cache_ = 0;                             // producer's view of tail_
  alignas(kCacheLine) std::atomic<size_t> tail_{0};  // written by the consumer
  size_t head_cache_ = 0;                             // consumer's view of head_
  char pad_[kCacheLine - sizeof(size_t)] = {};        // keep the next object off tail_'s line
};

// Many producers, one consumer: Vyukov's bounded queue, a sequence number per
// slot. A producer claims a position with one CAS and publishes the slot with
// a release store of its sequence; a full ring fails the push at once.
template <class T>
class MpscRing {
  static_assert(std::is_nothrow_move_assignable_v<T> && std::is_default_constructible_v<T>);

 public:
  explicit MpscRing(size_t capacity)
      : mask_(round_up_pow2(capacity < 2 ? 2 : capacity) - 1), cells_(std::make_unique<Cell[]>(mask_ + 1)) {
    for (size_t i = 0; i <= mask_; ++i) cells_[i].seq.store(i, std::memory_order_relaxed);
  }
  MpscRing(const MpscRing&) = delete;
  MpscRing& operator=(const MpscRing&) = delete;

  [[nodiscard]] size_t capacity() const noexcept { return mask_ + 1; }

  // Any thread. False when full.
  [[nodiscard]] bool try_push(T&& v) noexcept {
    size_t pos = enqueue_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cells_[pos & mask_];
      const size_t seq = c.seq.load(std::memory_order_acquire);  // A0: pairs with the consumer's R1
      const auto diff = static_cast<std::ptrdiff_t>(seq - pos);
      if (diff == 0) {
        if (enqueue_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          c.value = std::move(v);
          c.seq.store(pos + 1, std::memory_order_release);  // R0: publishes the value
          return true;
        }
      } else if (diff < 0) {
        return false;  // the slot still holds an item from one lap ago: full
      } else {
        pos = enqueue_.load(std::memory_order_relaxed);
      }
    }
  }
  [[nodiscard]] bool try_push(const T& v) noexcept {
    T copy = v;
    return try_push(std::move(copy));
  }

  // Any thread. Claims up to items.size() consecutive free slots with one CAS
  // and moves that many items in; returns how many.
  size_t push_burst(std::span<T> items) noexcept {
    if (items.empty()) return 0;
    size_t pos = enqueue_.load(std::memory_order_relaxed);
    size_t n;
    for (;;) {
      // The consumer frees slots in order, so the free ones from pos on are a
      // prefix: count it.
      n = 0;
      while (n < items.size() &&
             cells_[(pos + n) & mask_].seq.load(std::memory_order_acquire) == pos + n)  // A0
        ++n;
      if (n == 0) {
        const size_t seq = cells_[pos & mask_].seq.load(std::memory_order_acquire);
        if (static_cast<std::ptrdiff_t>(seq - pos) < 0) return 0;  // full
        pos = enqueue_.load(std::memory_order_relaxed);              // another producer moved on
        continue;
      }
      if (enqueue_.compare_exchange_weak(pos, pos + n, std::memory_order_relaxed)) break;
    }
    for (size_t i = 0; i < n; ++i) {
      Cell& c = cells_[(pos + i) & mask_];
      c.value = std::move(items[i]);
      c.seq.store(pos + i + 1, std::memory_order_release);  // R0
    }
    return n;
  }

  // Any producer: takes all of items or none of them (a group that must not
  // be split, like the copies of one multipoint send). Returns how many.
  size_t push_all(std::span<T> items) noexcept {
    if (items.empty() || items.size() > mask_ + 1) return 0;
    size_t pos = enqueue_.load(std::memory_order_relaxed);
    for (;;) {
      size_t n = 0;
      while (n < items.size() &&
             cells_[(pos + n) & mask_].seq.load(std::memory_order_acquire) == pos + n)  // A0
        ++n;
      if (n < items.size()) {
        const size_t seq = cells_[(pos + n) & mask_].seq.load(std::memory_order_acquire);
        if (static_cast<std::ptrdiff_t>(seq - (pos + n)) < 0) return 0;  // not room for all
        pos = enqueue_.load(std::memory_order_relaxed);                   // another producer moved on
        continue;
      }
      if (enqueue_.compare_exchange_weak(pos, pos + n, std::memory_order_relaxed)) break;
    }
    for (size_t i = 0; i < items.size(); ++i) {
      Cell& c = cells_[(pos + i) & mask_];
      c.value = std::move(items[i]);
      c.seq.store(pos + i + 1, std::memory_order_release);  // R0
    }
    return items.size();
  }

  // Consumer only. False when empty (or when the next producer has claimed its
  // slot but not yet published it).
  [[nodiscard]] bool try_pop(T& out) noexcept {
    const size_t pos = dequeue_.load(std::memory_order_relaxed);
    Cell& c = cells_[pos & mask_];
    if (c.seq.load(std::memory_order_acquire) != pos + 1) return false;  // A1: pairs with R0
    out = std::move(c.value);
    c.seq.store(pos + mask_ + 1, std::memory_order_release);  // R1: free for the next lap
    dequeue_.store(pos + 1, std::memory_order_relaxed);
    return true;
  }

  // Consumer only. Moves up to out.size() published items in order.
  size_t pop_burst(std::span<T> out) noexcept {
    size_t n = 0;
    while (n < out.size() && try_pop(out[n])) ++n;
    return n;
  }

  // Claimed (possibly not yet published) minus consumed; for statistics only.
  [[nodiscard]] size_t size_approx() const noexcept {
    const size_t d = dequeue_.load(std::memory_order_relaxed);
    const size_t e = enqueue_.load(std::memory_order_relaxed);
    return e > d ? e - d : 0;
  }

 private:
  struct Cell {
    std::atomic<size_t> seq;
    T value;
  };

  const size_t mask_;
  std::unique_ptr<Cell[]> cells_;
  alignas(kCacheLine) std::atomic<size_t> enqueue_{0};
  alignas(kCacheLine) std::atomic<size_t> dequeue_{0};  // written by the consumer only
  char pad_[kCacheLine - sizeof(size_t)] = {};
};

}  // namespace miniport
