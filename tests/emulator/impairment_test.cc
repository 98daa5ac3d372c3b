#include "emulator/impairment.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "cm/call_fsm.h"
#include "cm/sig_codec.h"
#include "emulator/unique_fd.h"
#include "miniport/byte_order.h"
#include "miniport/frame.h"

namespace emulator {
namespace {

using std::chrono::milliseconds;
using std::chrono::microseconds;

std::vector<uint8_t> frame_with_seq(uint32_t seq, size_t len = 64) {
  std::vector<uint8_t> f(len, 0xab);
  f[14] = static_cast<uint8_t>(seq >> 24);
  f[15] = static_cast<uint8_t>(seq >> 16);
  f[16] = static_cast<uint8_t>(seq >> 8);
  f[17] = static_cast<uint8_t>(seq);
  return f;
}

uint32_t seq_of(std::span<const uint8_t> f) {
  return (uint32_t{f[14]} << 24) | (uint32_t{f[15]} << 16) | (uint32_t{f[16]} << 8) | f[17];
}

// Submits n frames at time 0 and returns the seqs that come out by `until`.
std::vector<uint32_t> run(Impairer& imp, uint32_t n, Time until = Time::max()) {
  for (uint32_t i = 0; i < n; ++i) imp.submit(frame_with_seq(i), Time(0));
  std::vector<uint32_t> out;
  imp.release(until, [&](std::span<const uint8_t> f) { out.push_back(seq_of(f)); });
  return out;
}

ImpairmentConfig cfg(std::string_view spec) {
  auto c = ImpairmentConfig::parse(spec);
  EXPECT_TRUE(c.has_value()) << spec << ": " << last_error();
  return c.value_or(ImpairmentConfig{});
}

TEST(Impairment, ParsesEveryKeyAndRoundTrips) {
  auto c = cfg("loss=1.5%, delay=10ms,jitter=2ms,reorder=25%,duplicate=1%,corrupt=0.1%,rate=10mbit,limit=50,seed=42");
  EXPECT_DOUBLE_EQ(c.loss_pct, 1.5);
  EXPECT_EQ(c.delay, milliseconds(10));
  EXPECT_EQ(c.jitter, milliseconds(2));
  EXPECT_DOUBLE_EQ(c.reorder_pct, 25);
  EXPECT_DOUBLE_EQ(c.duplicate_pct, 1);
  EXPECT_DOUBLE_EQ(c.corrupt_pct, 0.1);
  EXPECT_EQ(c.rate_bps, 10'000'000u);
  EXPECT_EQ(c.queue_limit, 50u);
  EXPECT_EQ(c.seed, 42u);
  auto again = cfg(c.to_string());
  EXPECT_EQ(again.to_string(), c.to_string());
  EXPECT_EQ(again.delay, c.delay);
  EXPECT_EQ(again.rate_bps, c.rate_bps);
  EXPECT_FALSE(cfg("").active());
  EXPECT_FALSE(cfg("none").active());
  EXPECT_EQ(cfg("none").to_string(), "none");
}

TEST(Impairment, RejectsBadInputNamingIt) {
  struct Case {
    const char* spec;
    const char* mentions;
  } cases[] = {
      {"loss=101%", "loss"},        {"loss=abc", "loss"},         {"delay=10", "delay"},
      {"delay=5ms,jitter=6ms", "jitter"}, {"reorder=10%", "reorder needs a delay"},
      {"rate=10furlongs", "rate"},  {"bogus=1", "unknown impairment 'bogus'"},
      {"loss", "key=value"},        {"limit=0", "limit"},          {"seed=-1", "seed"},
  };
  for (const auto& c : cases) {
    auto r = ImpairmentConfig::parse(c.spec);
    ASSERT_FALSE(r.has_value()) << c.spec;
    EXPECT_EQ(r.error(), Status::kInvalidData) << c.spec;
    EXPECT_NE(last_error().find(c.mentions), std::string::npos) << c.spec << " -> " << last_error();
  }
}

TEST(Impairment, SameSeedSameFateExactDrops) {
  Impairer a(cfg("loss=10%,seed=42"));
  Impairer b(cfg("loss=10%,seed=42"));
  auto got_a = run(a, 1000);
  auto got_b = run(b, 1000);
  EXPECT_EQ(got_a, got_b);
  // Golden values for seed 42 (xoshiro256** seeded by splitmix64, seven draws
  // per frame): a change here means the generator or the draw order changed,
  // which breaks every recorded experiment's reproducibility.
  EXPECT_EQ(a.counters().dropped_loss, 113u);
  std::vector<uint32_t> dropped;
  for (uint32_t i = 0, j = 0; i < 1000; ++i) {
    if (j < got_a.size() && got_a[j] == i) ++j;
    else dropped.push_back(i);
  }
  ASSERT_GE(dropped.size(), 3u);
  EXPECT_EQ((std::vector<uint32_t>{dropped[0], dropped[1], dropped[2]}), (std::vector<uint32_t>{0, 11, 22}));

  Impairer c(cfg("loss=10%,seed=43"));
  EXPECT_NE(run(c, 1000), got_a);
}

TEST(Impairment, ChangingOneSettingKeepsTheOthersFate) {
  Impairer a(cfg("loss=10%,seed=7"));
  Impairer b(cfg("loss=10%,duplicate=0.0001%,seed=7"));
  auto got_a = run(a, 5000);
  auto got_b = run(b, 5000);
  // Duplicates aside, the same frames are lost.
  got_b.erase(std::unique(got_b.begin(), got_b.end()), got_b.end());
  EXPECT_EQ(got_a, got_b);
}

TEST(Impairment, RatesWithinBoundsOverManyFrames) {
  constexpr uint32_t kN = 100000;
  Impairer loss(cfg("loss=10%,seed=1"));
  auto out = run(loss, kN);
  EXPECT_NEAR(static_cast<double>(kN - out.size()) / kN, 0.10, 0.005);
  EXPECT_EQ(loss.counters().dropped_loss, kN - out.size());

  Impairer dup(cfg("duplicate=5%,seed=2"));
  out = run(dup, kN);
  EXPECT_NEAR(static_cast<double>(out.size() - kN) / kN, 0.05, 0.003);
  EXPECT_EQ(dup.counters().duplicated, out.size() - kN);
  EXPECT_EQ(dup.counters().frames_out, out.size());

  Impairer cor(cfg("corrupt=2%,seed=3"));
  uint64_t changed = 0;
  for (uint32_t i = 0; i < kN; ++i) cor.submit(frame_with_seq(i), Time(0));
  uint32_t i = 0;
  cor.release(Time(0), [&](std::span<const uint8_t> f) {
    auto orig = frame_with_seq(i++);
    size_t diff_bits = 0;
    for (size_t k = 0; k < f.size(); ++k) diff_bits += __builtin_popcount(f[k] ^ orig[k]);
    EXPECT_LE(diff_bits, 1u);
    for (size_t k = 0; k < 14; ++k) EXPECT_EQ(f[k], orig[k]) << "header must stay intact";
    changed += diff_bits;
  });
  EXPECT_EQ(changed, cor.counters().corrupted);
  EXPECT_NEAR(static_cast<double>(changed) / kN, 0.02, 0.002);
}

TEST(Impairment, DelayAndJitterBoundDueTimes) {
  Impairer d(cfg("delay=10ms,jitter=5ms,seed=9"));
  for (uint32_t i = 0; i < 1000; ++i) d.submit(frame_with_seq(i), Time(0));
  EXPECT_EQ(d.counters().delayed, 1000u);
  std::vector<uint32_t> out;
  auto collect = [&](std::span<const uint8_t> f) { out.push_back(seq_of(f)); };
  d.release(Time(milliseconds(5)) - Time(1), collect);
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(d.next_deadline().has_value());
  EXPECT_GE(*d.next_deadline(), Time(milliseconds(5)));
  d.release(Time(milliseconds(15)), collect);
  EXPECT_EQ(out.size(), 1000u);
  EXPECT_FALSE(std::is_sorted(out.begin(), out.end())) << "jitter of +-5ms must reorder";
  EXPECT_FALSE(d.next_deadline().has_value());
}

TEST(Impairment, ReorderSendsSomeFramesAhead) {
  Impairer r(cfg("delay=10ms,reorder=25%,seed=4"));
  auto out = run(r, 1000, Time(0));
  // At t=0 only the reordered frames (which skip the delay) are out.
  EXPECT_EQ(out.size(), r.counters().reordered);
  EXPECT_NEAR(static_cast<double>(out.size()) / 1000, 0.25, 0.05);
  std::vector<uint32_t> rest;
  r.release(Time(milliseconds(10)), [&](std::span<const uint8_t> f) { rest.push_back(seq_of(f)); });
  EXPECT_EQ(out.size() + rest.size(), 1000u);
}

TEST(Impairment, RateLimitSerializesAndTailDrops) {
  // 8 Mbit/s: a 1000-byte frame takes exactly 1 ms on the wire.
  Impairer r(cfg("rate=8mbit,seed=1"));
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < 10; ++i) r.submit(frame_with_seq(i, 1000), Time(0));
  auto collect = [&](std::span<const uint8_t> f) { out.push_back(seq_of(f)); };
  r.release(Time(microseconds(4999)), collect);
  EXPECT_EQ(out.size(), 4u);
  r.release(Time(milliseconds(5)), collect);
  EXPECT_EQ(out.size(), 5u);
  r.release(Time(milliseconds(10)), collect);
  EXPECT_EQ(out.size(), 10u);
  EXPECT_TRUE(std::is_sorted(out.begin(), out.end()));

  Impairer q(cfg("rate=8mbit,limit=3,seed=1"));
  for (uint32_t i = 0; i < 10; ++i) q.submit(frame_with_seq(i, 1000), Time(0));
  EXPECT_EQ(q.counters().dropped_queue, 7u);
  EXPECT_EQ(q.pending(), 3u);
}

}  // namespace
}  // namespace emulator

namespace emulator {
namespace {

// A SIG MSG frame carrying a message of `type` for call `ref`.
std::vector<uint8_t> sig_msg(cm::MsgType type, uint32_t ref, uint32_t seq) {
  cm::Message m;
  m.type = type;
  m.call_ref = ref;
  if (type == cm::MsgType::kConnect) m.vci = 5;
  std::vector<uint8_t> body(64);
  const size_t n = *cm::encode_message(m, body);
  std::vector<uint8_t> f(miniport::kEthHeaderLen + cm::kSigHeaderLen + n);
  miniport::store_be16(f.data() + 12, miniport::kEtherTypeSig);
  EXPECT_TRUE(cm::encode_sig({cm::SigKind::kMsg, 1, 0, seq, 0}, std::span(body).first(n),
                             std::span(f).subspan(miniport::kEthHeaderLen)));
  return f;
}

TEST(ImpairmentFaults, ParseNamesAndRoundTrips) {
  auto c = cfg("fault=drop:connect_ack,fault=drop:SETUP#2,fault=drop:*@7,fault=delay:RELEASE#1@9:300ms");
  ASSERT_EQ(c.faults.size(), 4u);
  EXPECT_TRUE(c.active());
  EXPECT_EQ(c.faults[0].msg_type, static_cast<uint8_t>(cm::MsgType::kConnectAck));
  EXPECT_EQ(c.faults[1].nth, 2u);
  EXPECT_FALSE(c.faults[2].msg_type.has_value());
  EXPECT_EQ(c.faults[2].call_ref, 7u);
  EXPECT_EQ(c.faults[3].action, FaultRule::Action::kDelay);
  EXPECT_EQ(c.faults[3].delay, milliseconds(300));
  EXPECT_EQ(cfg(c.to_string()).faults, c.faults) << c.to_string();
  for (const char* bad : {"fault=drop", "fault=zap:SETUP", "fault=drop:SETUPP", "fault=drop:SETUP#0",
                          "fault=drop:SETUP@x", "fault=delay:SETUP", "fault=drop:SETUP:1s", "fault=delay:SETUP:0ms"}) {
    auto r = ImpairmentConfig::parse(bad);
    EXPECT_FALSE(r.has_value()) << bad;
    EXPECT_NE(last_error().find("fault '"), std::string::npos) << bad << " -> " << last_error();
  }
}

TEST(ImpairmentFaults, DropEveryNthOrOneCallsAndDelay) {
  using cm::MsgType;
  Impairer imp(cfg("fault=drop:CONNECT#2,fault=drop:*@7,fault=delay:RELEASE:5ms"));
  std::vector<std::pair<MsgType, uint32_t>> sent = {
      {MsgType::kConnect, 1}, {MsgType::kConnect, 2}, {MsgType::kConnect, 3},  // the 2nd CONNECT goes
      {MsgType::kSetup, 7},   {MsgType::kRelease, 7},                          // every message of call 7 goes
      {MsgType::kRelease, 4},                                                  // held 5 ms
  };
  uint32_t seq = 0;
  for (auto [t, ref] : sent) {  // either direction bit: the rule names the call
    const uint32_t wire = ref | (seq % 2 ? cm::kCallRefToOriginator : 0);
    imp.submit(sig_msg(t, wire, ++seq), Time(0));
  }
  imp.submit(frame_with_seq(99), Time(0));  // not signaling: untouched
  std::vector<uint32_t> refs_now;
  imp.release(Time(0), [&](std::span<const uint8_t> f) {
    auto s = cm::decode_sig(f.subspan(miniport::kEthHeaderLen));
    refs_now.push_back(s ? miniport::load_be32(s->body.data() + 4) & 0x7FFFFFFF : 0);
  });
  EXPECT_EQ(refs_now, (std::vector<uint32_t>{1, 3, 0}));
  EXPECT_EQ(imp.next_deadline(), Time(milliseconds(5)));
  EXPECT_EQ(imp.counters().faulted, 4u);
}

}  // namespace
}  // namespace emulator
