// TokenBucket: the shaper of a guaranteed or controlled-load VC (the token
// bucket of a FLOWSPEC: token_rate bytes/s, bucket bytes deep). Pure: it is
// fed the time, so it is tested with an explicit clock.
//
//   TokenBucket tb(1'000'000, 3000, now);      // starts full
//   if (tb.take(frame_len, now)) write(frame); else wait_until(tb.ready_at(frame_len, now));
#pragma once

#include <algorithm>
#include <cstdint>

#include "miniport/time.h"

namespace miniport {

class TokenBucket {
 public:
  TokenBucket() = default;
  // rate: bytes per second (> 0); bucket: bytes (0 reads as one byte).
  TokenBucket(uint64_t rate, uint64_t bucket, Time now) noexcept { reset(rate, bucket, now); }

  // New parameters (R33 re-activation): the tokens held are kept up to the
  // new depth.
  void reset(uint64_t rate, uint64_t bucket, Time now) noexcept {
    const bool fresh = rate_ == 0;
    rate_ = std::max<uint64_t>(rate, 1);
    depth_ = std::max<uint64_t>(bucket, 1) * kScale;
    tokens_ = fresh ? depth_ : std::min(tokens_, depth_);
    last_ = now;
  }

  // Takes `bytes` tokens if they are there at `now`. A frame larger than the
  // bucket goes when the bucket is full (it could never fit otherwise), and
  // leaves it empty.
  bool take(uint64_t bytes, Time now) noexcept {
    refill(now);
    const uint64_t need = std::min(bytes * kScale, depth_);
    if (tokens_ < need) return false;
    tokens_ -= need;
    return true;
  }

  // When take(bytes) will succeed (now if it would now).
  [[nodiscard]] Time ready_at(uint64_t bytes, Time now) noexcept {
    refill(now);
    const uint64_t need = std::min(bytes * kScale, depth_);
    if (tokens_ >= need) return now;
    // Tokens grow by rate_ per ns in kScale units: ceil((need - tokens) / rate) ns.
    return now + Duration((need - tokens_ + rate_ - 1) / rate_);
  }

  [[nodiscard]] uint64_t rate() const noexcept { return rate_; }
  [[nodiscard]] uint64_t bucket() const noexcept { return depth_ / kScale; }

 private:
  // Tokens are counted in nano-bytes: a byte/s rate adds `rate` of them per ns.
  static constexpr uint64_t kScale = 1'000'000'000;
  void refill(Time now) noexcept {
    if (now <= last_) return;
    const uint64_t dt = static_cast<uint64_t>((now - last_).count());
    // No overflow: a bucket fills in depth_ / rate_ ns; past that it is full.
    const uint64_t room = depth_ - tokens_;
    tokens_ = dt >= room / rate_ + 1 ? depth_ : tokens_ + dt * rate_;
    if (tokens_ > depth_) tokens_ = depth_;
    last_ = now;
  }
  uint64_t rate_ = 0;
  uint64_t depth_ = kScale;
  uint64_t tokens_ = 0;
  Time last_{0};
};

}  // namespace miniport
