#include "cm/transport.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <deque>
#include <string>

namespace cm {
namespace {

using std::chrono::milliseconds;
using std::chrono::microseconds;

const MacAddress kA = MacAddress::local(0xa);
const MacAddress kB = MacAddress::local(0xb);

std::vector<uint8_t> msg(uint32_t i) {
  return {static_cast<uint8_t>(i >> 24), static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8),
          static_cast<uint8_t>(i)};
}
uint32_t num(std::span<const uint8_t> b) { return uint32_t{b[0]} << 24 | b[1] << 16 | b[2] << 8 | b[3]; }

// Two transports and a wire between them that can lose, duplicate and delay
// (and so reorder) frames, driven by an explicit clock and a fixed-seed
// generator: every run is the same run.
class Net {
 public:
  Net(uint32_t inc_a = 0xA0A0, uint32_t inc_b = 0xB0B0, const TransportConfig& cfg = {})
      : a(inc_a, cfg), b(inc_b, cfg) {}

  Transport a, b;
  double loss = 0, dup = 0;
  bool mute_b = false;  // every frame from b is lost (its ACKs included)
  Duration delay = microseconds(100), jitter{0};
  Time now{0};
  std::vector<uint32_t> got_a, got_b;  // message numbers delivered at each end
  std::vector<PeerEvent> events;
  std::vector<OutFrame> sent_by_a, sent_by_b;

  void apply(const MacAddress& from, Actions& acts) {
    for (auto& f : acts.frames) {
      (from == kA ? sent_by_a : sent_by_b).push_back(f);
      if (rnd() < loss || (from == kB && mute_b)) continue;
      const int copies = rnd() < dup ? 2 : 1;
      for (int c = 0; c < copies; ++c) {
        const Duration j = jitter.count() ? Duration(static_cast<int64_t>(rnd() * jitter.count())) : Duration(0);
        wire_.push_back({now + delay + j, from, f});
      }
    }
    for (auto& d : acts.delivered) (from == kA ? got_a : got_b).push_back(num(d.body()));
    for (auto& e : acts.events) events.push_back(e);
    acts.clear();
  }

  // Advances to the next event (a frame arriving or a timer) and runs it.
  bool step() {
    std::optional<Time> next;
    for (auto& w : wire_)
      if (!next || w.at < *next) next = w.at;
    for (auto d : {a.next_deadline(), b.next_deadline()})
      if (d && (!next || *d < *next)) next = d;
    if (!next) return false;
    now = std::max(now, *next);
    Actions acts;
    for (size_t i = 0; i < wire_.size();) {
      if (wire_[i].at <= now) {
        InFlight f = std::move(wire_[i]);
        wire_.erase(wire_.begin() + static_cast<long>(i));
        Transport& to = f.from == kA ? b : a;
        const MacAddress self = f.from == kA ? kB : kA;
        to.on_frame(f.from, SigFrame{f.frame.hdr, f.frame.body()}, now, acts);
        apply(self, acts);
      } else {
        ++i;
      }
    }
    a.on_timer(now, acts);
    apply(kA, acts);
    b.on_timer(now, acts);
    apply(kB, acts);
    return true;
  }

  void run_until(Time limit) {
    while (now < limit && step()) {
    }
  }

  size_t in_flight() const { return wire_.size(); }

 private:
  struct InFlight {
    Time at;
    MacAddress from;
    OutFrame frame;
  };
  double rnd() {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state_ >> 11) * 0x1.0p-53;
  }
  std::deque<InFlight> wire_;
  uint64_t state_ = 42;
};

TEST(Transport, DeliversInOrderExactlyOnceUnderLossDuplicationAndReordering) {
  Net n;
  n.loss = 0.2;
  n.dup = 0.1;
  n.jitter = milliseconds(3);
  Actions acts;
  for (uint32_t i = 0; i < 1000; ++i) {
    ASSERT_TRUE(n.a.send(kB, msg(i), n.now, acts));
    n.apply(kA, acts);
    ASSERT_TRUE(n.b.send(kA, msg(i), n.now, acts));
    n.apply(kB, acts);
  }
  n.run_until(Time(std::chrono::seconds(600)));
  ASSERT_EQ(n.got_b.size(), 1000u);
  ASSERT_EQ(n.got_a.size(), 1000u);
  for (uint32_t i = 0; i < 1000; ++i) {
    ASSERT_EQ(n.got_b[i], i);
    ASSERT_EQ(n.got_a[i], i);
  }
  EXPECT_TRUE(n.events.empty());
  EXPECT_GT(n.a.counters().retransmits, 0u);
  EXPECT_GT(n.b.counters().duplicates, 0u);
  EXPECT_EQ(n.a.unacked(kB), 0u);
}

TEST(Transport, RetransmitsWithBackoffThenDeclaresThePeerDown) {
  Net n;
  n.loss = 1.0;  // nothing arrives
  Actions acts;
  ASSERT_TRUE(n.a.send(kB, msg(1), n.now, acts));
  n.apply(kA, acts);
  std::vector<int64_t> resend_ms;
  while (n.events.empty() && n.step()) {
  }
  for (size_t i = 1; i < n.sent_by_a.size(); ++i) {
    ASSERT_EQ(n.sent_by_a[i].hdr.seq, 1u) << "the oldest unacked MSG is resent";
  }
  // 50 ms doubling to a 2 s cap: resends at 50, 150, 350, 750, 1550, 3150,
  // 5150 ms; the 8th expiry (7150 ms) declares the peer down.
  EXPECT_EQ(n.sent_by_a.size(), 8u) << "one send and 7 resends";
  EXPECT_EQ(n.a.counters().retransmits, 7u);
  ASSERT_EQ(n.events.size(), 1u);
  EXPECT_EQ(n.events[0].kind, PeerEventKind::kDown);
  EXPECT_EQ(n.now, Time(milliseconds(7150)));
  EXPECT_FALSE(n.a.has_association(kB));
}

TEST(Transport, GivingUpOnAPeerThatStillHearsUsResetsItsSideToo) {
  // b hears a but its ACKs are lost: a gives up. Without a RESET, b would
  // keep the association and take a's next MSG (seq 1 again) for an old
  // duplicate forever.
  Net n;
  Actions acts;
  ASSERT_TRUE(n.a.send(kB, msg(1), n.now, acts));
  n.apply(kA, acts);
  while (n.step()) {
  }
  ASSERT_EQ(n.got_b, std::vector<uint32_t>{1});
  n.mute_b = true;
  ASSERT_TRUE(n.a.send(kB, msg(2), n.now, acts));
  n.apply(kA, acts);
  while (n.events.size() < 2 && n.step()) {
  }
  ASSERT_EQ(n.events.size(), 2u);
  EXPECT_EQ(n.events[0].kind, PeerEventKind::kDown);
  EXPECT_EQ(n.events[0].peer, kB);
  EXPECT_EQ(n.events[1].kind, PeerEventKind::kReset) << "b dropped its side (and would clear its calls)";
  EXPECT_EQ(n.events[1].peer, kA);
  EXPECT_FALSE(n.b.has_association(kA));
  // Healed: a's next message opens a fresh association and is delivered.
  n.mute_b = false;
  ASSERT_TRUE(n.a.send(kB, msg(3), n.now, acts));
  n.apply(kA, acts);
  while (n.step()) {
  }
  EXPECT_EQ(n.got_b, (std::vector<uint32_t>{1, 2, 3})) << "2 arrived (b could not ack it), then 3";
  EXPECT_EQ(n.a.unacked(kB), 0u);
}

TEST(Transport, BareAckFiveMillisecondsAfterAMsgNothingCarries) {
  Transport b(0xB);
  Actions acts;
  SigFrame f{SigHeader{SigKind::kMsg, 0xA, 0, 1, 0}, {}};
  b.on_frame(kA, f, Time(0), acts);
  ASSERT_EQ(acts.delivered.size(), 1u);
  EXPECT_TRUE(acts.frames.empty());
  acts.clear();
  ASSERT_EQ(b.next_deadline(), Time(milliseconds(5)));
  b.on_timer(Time(milliseconds(5)) - Time(1), acts);
  EXPECT_TRUE(acts.frames.empty());
  b.on_timer(Time(milliseconds(5)), acts);
  ASSERT_EQ(acts.frames.size(), 1u);
  EXPECT_EQ(acts.frames[0].hdr.kind, SigKind::kAck);
  EXPECT_EQ(acts.frames[0].hdr.ack, 1u);
  EXPECT_EQ(acts.frames[0].hdr.peer_incarnation, 0xAu);
}

TEST(Transport, AMsgCarriesTheAckSoNoBareAckFollows) {
  Transport b(0xB);
  Actions acts;
  b.on_frame(kA, SigFrame{SigHeader{SigKind::kMsg, 0xA, 0, 1, 0}, {}}, Time(0), acts);
  acts.clear();
  ASSERT_TRUE(b.send(kA, msg(7), Time(milliseconds(1)), acts));
  ASSERT_EQ(acts.frames.size(), 1u);
  EXPECT_EQ(acts.frames[0].hdr.ack, 1u);
  acts.clear();
  b.on_timer(Time(milliseconds(6)), acts);
  EXPECT_TRUE(acts.frames.empty());
}

TEST(Transport, AMsgPastAGapIsAckedAtOnce) {
  Transport b(0xB);
  Actions acts;
  b.on_frame(kA, SigFrame{SigHeader{SigKind::kMsg, 0xA, 0, 1, 0}, {}}, Time(0), acts);
  acts.clear();
  b.on_frame(kA, SigFrame{SigHeader{SigKind::kMsg, 0xA, 0xB, 3, 0}, {}}, Time(1), acts);
  EXPECT_TRUE(acts.delivered.empty()) << "seq 2 is missing";
  ASSERT_EQ(acts.frames.size(), 1u);
  EXPECT_EQ(acts.frames[0].hdr.kind, SigKind::kAck);
  EXPECT_EQ(acts.frames[0].hdr.ack, 1u);
}

// Sends MSGs 1-5 from a to b and has b ack 1: seq 2 is the oldest unacked.
Transport sender_with_oldest_two(const TransportConfig& cfg, Actions& acts) {
  Transport a(0xA, cfg);
  for (uint32_t i = 1; i <= 5; ++i) EXPECT_TRUE(a.send(kB, msg(i), Time(0), acts));
  a.on_frame(kB, SigFrame{SigHeader{SigKind::kAck, 0xB, 0xA, 0, 1}, {}}, Time(1), acts);
  acts.clear();
  return a;
}

TEST(Transport, ThirdRepeatedAckResendsTheOldestOnceBeforeTheRto) {
  Actions acts;
  Transport a = sender_with_oldest_two({.fast_retransmit_acks = 3}, acts);
  const SigFrame same{SigHeader{SigKind::kAck, 0xB, 0xA, 0, 1}, {}};
  a.on_frame(kB, same, Time(2), acts);
  a.on_frame(kB, same, Time(3), acts);
  EXPECT_TRUE(acts.frames.empty());
  a.on_frame(kB, same, Time(4), acts);
  ASSERT_EQ(acts.frames.size(), 1u);
  EXPECT_EQ(acts.frames[0].hdr.seq, 2u);
  EXPECT_TRUE(std::ranges::equal(acts.frames[0].body(), msg(2)));
  EXPECT_EQ(a.counters().fast_retransmits, 1u);
  acts.clear();
  a.on_frame(kB, same, Time(5), acts);
  EXPECT_TRUE(acts.frames.empty()) << "once per gap";
  EXPECT_EQ(a.next_deadline(), Time(1) + milliseconds(50)) << "the RTO runs on, not backed off";
  // The gap closes; the next one gets its own fast resend.
  a.on_frame(kB, SigFrame{SigHeader{SigKind::kAck, 0xB, 0xA, 0, 3}, {}}, Time(6), acts);
  const SigFrame at3{SigHeader{SigKind::kAck, 0xB, 0xA, 0, 3}, {}};
  for (int i = 0; i < 3; ++i) a.on_frame(kB, at3, Time(7 + i), acts);
  ASSERT_EQ(acts.frames.size(), 1u);
  EXPECT_EQ(acts.frames[0].hdr.seq, 4u);
}

TEST(Transport, ByDefaultTheFirstAckThatShowsAGapResends) {
  Actions acts;
  Transport a = sender_with_oldest_two({}, acts);
  a.on_frame(kB, SigFrame{SigHeader{SigKind::kAck, 0xB, 0xA, 0, 1}, {}}, Time(2), acts);
  ASSERT_EQ(acts.frames.size(), 1u);
  EXPECT_EQ(acts.frames[0].hdr.seq, 2u);
}

TEST(Transport, FastRetransmitOffWaitsForTheRto) {
  Actions acts;
  Transport a = sender_with_oldest_two({.fast_retransmit_acks = 0}, acts);
  for (int i = 0; i < 5; ++i) a.on_frame(kB, SigFrame{SigHeader{SigKind::kAck, 0xB, 0xA, 0, 1}, {}}, Time(2 + i), acts);
  EXPECT_TRUE(acts.frames.empty());
  EXPECT_EQ(a.counters().fast_retransmits, 0u);
  Transport b(0xB, {.fast_retransmit_acks = 0});
  b.on_frame(kA, SigFrame{SigHeader{SigKind::kMsg, 0xA, 0, 1, 0}, {}}, Time(0), acts);
  b.on_frame(kA, SigFrame{SigHeader{SigKind::kMsg, 0xA, 0xB, 3, 0}, {}}, Time(1), acts);
  EXPECT_TRUE(acts.frames.empty()) << "3.2 alone: the ack waits for the delay";
}

// The same seeded lossy stream with and without fast retransmit: every
// message arrives either way, and the repair by repeated acks finishes it in
// far less (simulated) time than the RTO alone.
TEST(Transport, FastRetransmitRepairsLossSoonerThanTheRto) {
  auto finish = [](uint32_t fast, uint64_t* fast_count) {
    Net n(0xA0A0, 0xB0B0, {.fast_retransmit_acks = fast});
    n.loss = 0.1;
    n.jitter = microseconds(200);
    Actions acts;
    for (uint32_t i = 0; i < 2000; ++i) {
      n.run_until(n.now + microseconds(50));  // a steady stream, not one burst
      n.now += microseconds(50);
      EXPECT_TRUE(n.a.send(kB, msg(i), n.now, acts));
      n.apply(kA, acts);
    }
    while (n.got_b.size() < 2000 && n.step()) {
    }
    EXPECT_EQ(n.got_b.size(), 2000u);
    for (uint32_t i = 0; i < n.got_b.size(); ++i) EXPECT_EQ(n.got_b[i], i);
    *fast_count = n.a.counters().fast_retransmits;
    return n.now;
  };
  uint64_t fast_on = 0, fast_three = 0, fast_off = 0;
  const Time with = finish(1, &fast_on);
  const Time with_three = finish(3, &fast_three);
  const Time without = finish(0, &fast_off);
  EXPECT_GT(fast_on, 50u);
  EXPECT_GT(fast_three, 50u);
  EXPECT_EQ(fast_off, 0u);
  EXPECT_LT((with - Time(0)) * 2, without - Time(0)) << "at least 2x sooner";
  EXPECT_LT((with_three - Time(0)) * 2, without - Time(0)) << "at least 2x sooner";
}

TEST(Transport, AtMostAWindowOfUnackedMessages) {
  Transport a(0xA);
  Actions acts;
  for (uint32_t i = 0; i < 100; ++i) ASSERT_TRUE(a.send(kB, msg(i), Time(0), acts));
  EXPECT_EQ(acts.frames.size(), 64u);
  EXPECT_EQ(a.unacked(kB), 64u);
  acts.clear();
  a.on_frame(kB, SigFrame{SigHeader{SigKind::kAck, 0xB, 0xA, 0, 10}, {}}, Time(1), acts);
  EXPECT_EQ(acts.frames.size(), 10u) << "ten acked, ten more go";
  EXPECT_EQ(acts.frames.front().hdr.seq, 65u);
}

TEST(Transport, QueueBehindTheWindowIsBounded) {
  Transport a(0xA, {.window = 2, .max_queued = 3});
  Actions acts;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(a.send(kB, msg(i), Time(0), acts));
  EXPECT_EQ(a.send(kB, msg(9), Time(0), acts).error(), Status::kResources);
}

TEST(Transport, FrameForAnEarlierLifeIsAnsweredWithReset) {
  Transport b(0xB2);  // b restarted; 0xB1 was its earlier life
  Actions acts;
  b.on_frame(kA, SigFrame{SigHeader{SigKind::kMsg, 0xA, 0xB1, 5, 3}, {}}, Time(0), acts);
  ASSERT_EQ(acts.frames.size(), 1u);
  EXPECT_EQ(acts.frames[0].hdr.kind, SigKind::kReset);
  EXPECT_EQ(acts.frames[0].hdr.peer_incarnation, 0xAu) << "RESET names the frame's incarnation";
  EXPECT_TRUE(acts.delivered.empty());
}

TEST(Transport, ResetForOurLifeClearsStaleResetIsIgnored) {
  Net n;
  Actions acts;
  ASSERT_TRUE(n.a.send(kB, msg(1), n.now, acts));
  n.apply(kA, acts);
  n.run_until(Time(milliseconds(20)));
  ASSERT_TRUE(n.a.has_association(kB));
  n.a.on_frame(kB, SigFrame{SigHeader{SigKind::kReset, 0xB0B0, 0x1234, 0, 0}, {}}, n.now, acts);
  EXPECT_TRUE(acts.events.empty());
  EXPECT_EQ(n.a.counters().stale_resets, 1u);
  n.a.on_frame(kB, SigFrame{SigHeader{SigKind::kReset, 0xB0B0, 0xA0A0, 0, 0}, {}}, n.now, acts);
  ASSERT_EQ(acts.events.size(), 1u);
  EXPECT_EQ(acts.events[0].kind, PeerEventKind::kReset);
  EXPECT_FALSE(n.a.has_association(kB));
}

TEST(Transport, SeqOneFromANewIncarnationMeansThePeerRestarted) {
  Transport a(0xA);
  Actions acts;
  a.on_frame(kB, SigFrame{SigHeader{SigKind::kMsg, 0xB1, 0, 1, 0}, {}}, Time(0), acts);
  ASSERT_EQ(acts.delivered.size(), 1u);
  acts.clear();
  a.on_frame(kB, SigFrame{SigHeader{SigKind::kMsg, 0xB2, 0, 1, 0}, {}}, Time(1), acts);
  ASSERT_EQ(acts.events.size(), 1u);
  EXPECT_EQ(acts.events[0].kind, PeerEventKind::kRestarted);
  EXPECT_EQ(acts.delivered.size(), 1u) << "the new life's first message is delivered";
}

TEST(Transport, MidStreamMsgWithoutAnAssociation) {
  Transport a(0xA);
  Actions acts;
  // The sender is still opening (it does not know us yet): dropped silently.
  a.on_frame(kB, SigFrame{SigHeader{SigKind::kMsg, 0xB, 0, 3, 0}, {}}, Time(0), acts);
  EXPECT_TRUE(acts.frames.empty());
  EXPECT_TRUE(acts.delivered.empty());
  EXPECT_EQ(a.counters().dropped_opening, 1u);
  // It knows us, so it had an association we lost: RESET.
  a.on_frame(kB, SigFrame{SigHeader{SigKind::kMsg, 0xB, 0xA, 3, 0}, {}}, Time(0), acts);
  ASSERT_EQ(acts.frames.size(), 1u);
  EXPECT_EQ(acts.frames[0].hdr.kind, SigKind::kReset);
}

TEST(Transport, BeyondTheWindowIsDroppedAndAckAboveSentIsIgnored) {
  Transport a(0xA);
  Actions acts;
  a.on_frame(kB, SigFrame{SigHeader{SigKind::kMsg, 0xB, 0, 1, 0}, {}}, Time(0), acts);
  acts.clear();
  a.on_frame(kB, SigFrame{SigHeader{SigKind::kMsg, 0xB, 0xA, 1 + 65, 0}, {}}, Time(0), acts);
  EXPECT_TRUE(acts.delivered.empty());
  EXPECT_EQ(a.counters().out_of_window, 1u);
  ASSERT_TRUE(a.send(kB, msg(1), Time(0), acts));
  a.on_frame(kB, SigFrame{SigHeader{SigKind::kAck, 0xB, 0xA, 0, 9}, {}}, Time(0), acts);
  EXPECT_EQ(a.counters().ack_above_sent, 1u);
  EXPECT_EQ(a.unacked(kB), 1u);
}

TEST(Transport, HelloWithANewIncarnationDropsTheOldAssociation) {
  Net n;
  Actions acts;
  ASSERT_TRUE(n.a.send(kB, msg(1), n.now, acts));
  n.apply(kA, acts);
  n.run_until(Time(milliseconds(20)));
  n.a.peer_incarnation(kB, 0xB0B0, acts);
  EXPECT_TRUE(acts.events.empty()) << "same life";
  n.a.peer_incarnation(kB, 0xBEEF, acts);
  ASSERT_EQ(acts.events.size(), 1u);
  EXPECT_EQ(acts.events[0].kind, PeerEventKind::kRestarted);
}

}  // namespace
}  // namespace cm
