// Link impairments done in user space (this kernel has no netem): loss, delay
// with jitter, reorder, duplicate, corrupt and a rate limit, per link and
// direction, from a seeded generator so a run can be reproduced exactly.
//
//   auto cfg = ImpairmentConfig::parse("loss=1%,delay=10ms,jitter=2ms,seed=7");
//   Impairer imp(*cfg);
//   imp.submit(frame, now);                       // decide this frame's fate
//   imp.release(now, [&](std::span<const uint8_t> f) { write_to_wire(f); });
//
// Impairer is pure: it reads no clock and does no I/O. The links own one per
// direction and call release() from their send and receive paths; a link with
// no active impairment bypasses it entirely (no copy, no allocation).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "miniport/status.h"
#include "miniport/time.h"

namespace emulator {

using miniport::Duration;
using miniport::Result;
using miniport::Time;

// A targeted fault on signaling: drops or delays the MSG frames that carry
// one message type (or any), every one or only the Nth, optionally only
// those of one call. Spec: fault=ACTION:TYPE[#N][@CALLREF][:DURATION], e.g.
// fault=drop:CONNECT_ACK, fault=drop:SETUP#2, fault=drop:*@7,
// fault=delay:RELEASE:300ms. The transport resends what is dropped, so
// "every" starves the peer of that message and "#N" costs one resend.
struct FaultRule {
  enum class Action : uint8_t { kDrop, kDelay };
  Action action = Action::kDrop;
  std::optional<uint8_t> msg_type;   // nullopt: every message
  uint32_t nth = 0;                  // 0: every match; else only the nth (from 1)
  std::optional<uint32_t> call_ref;  // only this call (the reference without its direction bit)
  Duration delay{0};                 // kDelay: added to the frame's delay
  friend bool operator==(const FaultRule&, const FaultRule&) = default;
};

struct ImpairmentConfig {
  double loss_pct = 0;       // frames dropped, in percent
  double duplicate_pct = 0;  // frames sent twice
  double corrupt_pct = 0;    // frames with one bit flipped (after the Ethernet header)
  double reorder_pct = 0;    // frames sent at once, skipping the delay (needs delay > 0)
  Duration delay{0};         // added to every frame
  Duration jitter{0};        // uniform in [-jitter, +jitter] around delay
  uint64_t rate_bps = 0;     // serialization rate; 0 = unlimited
  uint32_t queue_limit = 1000;  // frames waiting for the rate limiter before tail drop
  uint64_t seed = 1;         // the generator's seed; same seed + same frames = same fate
  std::vector<FaultRule> faults;  // targeted faults on signaling, applied before the rest

  // True when any impairment is set (a link without one takes the bypass path).
  [[nodiscard]] bool active() const noexcept;
  // kInvalidData (with last_error() naming the field) for a percentage outside
  // [0,100], negative times, jitter > delay, reorder without delay, or limit 0.
  [[nodiscard]] Result<void> validate() const;
  // Parses "loss=1%,delay=10ms,jitter=2ms,reorder=25%,duplicate=1%,corrupt=0.1%,
  // rate=10mbit,limit=1000,seed=42,fault=drop:CONNECT" (any subset, any
  // order, fault= repeatable; "" or "none" = no
  // impairment). Times take ns/us/ms/s, rates bit/kbit/mbit/gbit (or bps). Errors:
  // kInvalidData naming the bad key or value in last_error().
  [[nodiscard]] static Result<ImpairmentConfig> parse(std::string_view spec);
  // The canonical spec string, which parse() reads back to an equal config.
  [[nodiscard]] std::string to_string() const;
};

struct ImpairmentCounters {
  uint64_t frames_in = 0;      // frames submitted
  uint64_t frames_out = 0;     // copies released to the wire
  uint64_t dropped_loss = 0;   // lost on purpose
  uint64_t dropped_queue = 0;  // tail-dropped: rate-limiter queue full
  uint64_t duplicated = 0;
  uint64_t corrupted = 0;
  uint64_t reordered = 0;      // sent ahead of earlier delayed frames
  uint64_t delayed = 0;        // copies held back for delay, jitter or rate
  uint64_t faulted = 0;        // SIG frames a targeted fault dropped or delayed

  ImpairmentCounters& operator+=(const ImpairmentCounters& o) noexcept {
    frames_in += o.frames_in;
    frames_out += o.frames_out;
    dropped_loss += o.dropped_loss;
    dropped_queue += o.dropped_queue;
    duplicated += o.duplicated;
    corrupted += o.corrupted;
    reordered += o.reordered;
    delayed += o.delayed;
    faulted += o.faulted;
    return *this;
  }
  friend ImpairmentCounters operator+(ImpairmentCounters a, const ImpairmentCounters& b) noexcept {
    return a += b;
  }
};

// xoshiro256** seeded through splitmix64: fixed, documented output on every
// platform (std:: distributions are not), which the reproducibility tests need.
class Rng {
 public:
  explicit Rng(uint64_t seed) noexcept;
  uint64_t next() noexcept;
  // Uniform in [0, 1).
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform in [0, n); n > 0.
  uint64_t below(uint64_t n) noexcept { return n ? next() % n : 0; }

 private:
  uint64_t s_[4];
};

class Impairer {
 public:
  explicit Impairer(const ImpairmentConfig& cfg);

  // Decides one frame's fate at `now`: zero, one or two copies are queued, each
  // with its due time. Copies due at once are released by the next release().
  void submit(std::span<const uint8_t> frame, Time now);

  // Calls emit(std::span<const uint8_t>) for every copy due at or before `now`,
  // in due order (submission order among equal times).
  template <class Emit>
  void release(Time now, Emit&& emit) {
    while (!queue_.empty() && queue_.top().due <= now) {
      // priority_queue::top is const; the bytes are moved out before pop().
      auto bytes = std::move(const_cast<Pending&>(queue_.top()).bytes);
      queue_.pop();
      ++counters_.frames_out;
      emit(std::span<const uint8_t>(bytes));
    }
  }

  // The earliest due time of a held copy, if any.
  [[nodiscard]] std::optional<Time> next_deadline() const {
    if (queue_.empty()) return std::nullopt;
    return queue_.top().due;
  }
  [[nodiscard]] size_t pending() const noexcept { return queue_.size(); }
  [[nodiscard]] const ImpairmentCounters& counters() const noexcept { return counters_; }
  [[nodiscard]] const ImpairmentConfig& config() const noexcept { return cfg_; }

 private:
  struct Pending {
    Time due;
    uint64_t seq;
    std::vector<uint8_t> bytes;
  };
  struct Later {
    bool operator()(const Pending& a, const Pending& b) const noexcept {
      return a.due != b.due ? a.due > b.due : a.seq > b.seq;
    }
  };

  void enqueue(std::span<const uint8_t> frame, Time due, Time now, bool corrupt,
               uint64_t corrupt_draw);
  // The targeted faults' verdict on a frame: nullopt to drop it, else the
  // delay they add.
  std::optional<Duration> apply_faults(std::span<const uint8_t> frame);

  ImpairmentConfig cfg_;
  Rng rng_;
  ImpairmentCounters counters_;
  std::priority_queue<Pending, std::vector<Pending>, Later> queue_;
  uint64_t seq_ = 0;
  Time link_free_at_{0};           // when the rate limiter's "wire" is idle again
  std::deque<Time> rate_backlog_;  // departure times of frames still serializing
  std::vector<uint32_t> fault_seen_;  // per rule: matching frames so far
};

}  // namespace emulator
