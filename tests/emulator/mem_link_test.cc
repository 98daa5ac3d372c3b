#include "emulator/mem_link.h"

#include <gtest/gtest.h>

#include <thread>

#include "emulator/clock.h"
#include "frames.h"

namespace emulator {
namespace {

using coemu_test::frame_intact;
using coemu_test::frame_seq;
using coemu_test::make_frame;
using miniport::MacAddress;
using std::chrono::milliseconds;

struct Pair {
  std::unique_ptr<MemLink> a, b;
};

Pair make(MemLinkOptions o = {}) {
  auto p = MemLink::make_pair(o);
  EXPECT_TRUE(p.has_value());
  return {std::move(p->first), std::move(p->second)};
}

// Receives until `want` frames arrived or 5 s passed; returns the frames.
std::vector<std::vector<uint8_t>> receive(Link& l, size_t want) {
  std::vector<std::vector<uint8_t>> got;
  std::vector<uint8_t> storage(32 * 2048);
  std::vector<RxFrame> slots(32);
  const auto deadline = steady_now() + std::chrono::seconds(5);
  while (got.size() < want && steady_now() < deadline) {
    for (size_t i = 0; i < slots.size(); ++i) slots[i] = RxFrame{{&storage[i * 2048], 2048}};
    auto n = l.recv_burst(slots);
    EXPECT_TRUE(n.has_value());
    if (!n || *n == 0) {
      (void)l.wait_readable(milliseconds(20));
      continue;
    }
    for (size_t i = 0; i < *n; ++i) got.emplace_back(slots[i].buf.begin(), slots[i].buf.begin() + slots[i].len);
  }
  return got;
}

Result<size_t> send_one(Link& l, const std::vector<uint8_t>& f) {
  std::span<const uint8_t> s(f);
  return l.send_burst(std::span(&s, 1));
}

TEST(MemLink, DeliversInOrderBothWays) {
  auto [a, b] = make();
  const auto ma = MacAddress::local(1), mb = MacAddress::local(2);
  for (uint32_t i = 0; i < 1000; ++i) {
    ASSERT_EQ(*send_one(*a, make_frame(mb, ma, i, 60 + i % 1455)), 1u);
    ASSERT_EQ(*send_one(*b, make_frame(ma, mb, i, 1514 - i % 1455)), 1u);
  }
  auto at_b = receive(*b, 1000);
  auto at_a = receive(*a, 1000);
  ASSERT_EQ(at_b.size(), 1000u);
  ASSERT_EQ(at_a.size(), 1000u);
  for (uint32_t i = 0; i < 1000; ++i) {
    EXPECT_EQ(frame_seq(at_b[i]), i);
    EXPECT_TRUE(frame_intact(at_b[i], 60 + i % 1455));
    EXPECT_EQ(frame_seq(at_a[i]), i);
    EXPECT_TRUE(frame_intact(at_a[i], 1514 - i % 1455));
  }
  EXPECT_EQ(a->counters().tx_frames, 1000u);
  EXPECT_EQ(b->counters().rx_frames, 1000u);
}

TEST(MemLink, FullQueueIsBackPressureNotLoss) {
  auto [a, b] = make({.mtu = 1500, .capacity = 8});
  std::vector<std::vector<uint8_t>> frames;
  for (uint32_t i = 0; i < 10; ++i) frames.push_back(make_frame(MacAddress::local(2), MacAddress::local(1), i, 64));
  std::vector<std::span<const uint8_t>> spans(frames.begin(), frames.end());
  EXPECT_EQ(*a->send_burst(spans), 8u);
  EXPECT_EQ(a->counters().tx_backpressure, 1u);
  auto got = receive(*b, 8);
  EXPECT_EQ(got.size(), 8u);
  EXPECT_EQ(*a->send_burst(std::span(spans).subspan(8)), 2u);
  got = receive(*b, 2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(frame_seq(got[1]), 9u);
}

TEST(MemLink, SmallByteRingWrapsWithoutLosingOrCorrupting) {
  // The smallest ring (4 MTU frames): every round fills it until
  // back-pressure, then drains it, so records wrap at every offset.
  auto [a, b] = make({.mtu = 1500, .capacity = 4096, .bytes = 0});
  const auto ma = MacAddress::local(1), mb = MacAddress::local(2);
  uint32_t next_send = 0, next_recv = 0;
  auto size_of = [](uint32_t i) -> size_t { return 60 + (i * 389) % 1455; };
  for (int round = 0; round < 300; ++round) {
    for (;;) {
      auto f = make_frame(mb, ma, next_send, size_of(next_send));
      if (*send_one(*a, f) == 0) break;
      ++next_send;
    }
    auto got = receive(*b, next_send - next_recv);
    ASSERT_EQ(got.size(), next_send - next_recv);
    for (const auto& f : got) {
      ASSERT_EQ(frame_seq(f), next_recv);
      ASSERT_TRUE(frame_intact(f, size_of(next_recv)));
      ++next_recv;
    }
  }
  EXPECT_GT(next_send, 600u);
}

TEST(MemLink, RejectsFramesThatDoNotFit) {
  auto [a, b] = make({.mtu = 1500});
  EXPECT_EQ(send_one(*a, {}).error(), Status::kInvalidLength);
  EXPECT_EQ(send_one(*a, std::vector<uint8_t>(1515)).error(), Status::kInvalidLength);
  EXPECT_EQ(*send_one(*a, std::vector<uint8_t>(1514)), 1u);
  EXPECT_FALSE(MemLink::make_pair({.mtu = 10}).has_value());
  EXPECT_FALSE(MemLink::make_pair({.mtu = 1500, .capacity = 0}).has_value());
}

TEST(MemLink, TruncatesIntoShortBuffersAndSaysSo) {
  auto [a, b] = make();
  ASSERT_TRUE(send_one(*a, make_frame(MacAddress::local(2), MacAddress::local(1), 5, 200)));
  std::vector<uint8_t> buf(100);
  RxFrame slot{{buf.data(), buf.size()}};
  ASSERT_EQ(*b->recv_burst(std::span(&slot, 1)), 1u);
  EXPECT_TRUE(slot.truncated);
  EXPECT_EQ(slot.len, 100u);
  EXPECT_EQ(b->counters().rx_truncated, 1u);
}

TEST(MemLink, WaitReadableWakesOnSendAndTimesOut) {
  auto [a, b] = make();
  EXPECT_FALSE(*b->wait_readable(milliseconds(10)));
  std::jthread sender([&, &a = a] {
    std::this_thread::sleep_for(milliseconds(20));
    (void)send_one(*a, make_frame(MacAddress::local(2), MacAddress::local(1), 1, 64));
  });
  EXPECT_TRUE(*b->wait_readable(std::chrono::seconds(5)));
}

TEST(MemLink, SeededLossIsReproducibleAcrossRuns) {
  std::vector<uint32_t> runs[2];
  for (auto& got : runs) {
    auto [a, b] = make({.mtu = 1500, .capacity = 20000});
    ASSERT_TRUE(a->set_impairment(*ImpairmentConfig::parse("loss=20%,seed=99")));
    for (uint32_t i = 0; i < 10000; ++i) ASSERT_EQ(*send_one(*a, make_frame(MacAddress::local(2), MacAddress::local(1), i, 64)), 1u);
    const auto lost = a->impairment_counters().dropped_loss;
    for (auto& f : receive(*b, 10000 - lost)) got.push_back(frame_seq(f));
    EXPECT_EQ(got.size() + lost, 10000u);
    EXPECT_NEAR(lost / 10000.0, 0.20, 0.015);
  }
  EXPECT_EQ(runs[0], runs[1]);
}

TEST(MemLink, DelayHoldsFramesUntilDue) {
  auto [a, b] = make();
  ASSERT_TRUE(a->set_impairment(*ImpairmentConfig::parse("delay=30ms")));
  const auto t0 = steady_now();
  ASSERT_EQ(*send_one(*a, make_frame(MacAddress::local(2), MacAddress::local(1), 1, 64)), 1u);
  std::vector<uint8_t> buf(2048);
  RxFrame slot{{buf.data(), buf.size()}};
  EXPECT_EQ(*b->recv_burst(std::span(&slot, 1)), 0u) << "a delayed frame must not arrive at once";
  ASSERT_TRUE(*b->wait_readable(std::chrono::seconds(5)));
  EXPECT_GE(steady_now() - t0, milliseconds(30));
  EXPECT_EQ(*b->recv_burst(std::span(&slot, 1)), 1u);
  EXPECT_EQ(a->impairment_counters().delayed, 1u);
}

TEST(MemLink, BadImpairmentChangesNothing) {
  auto [a, b] = make();
  ImpairmentConfig bad;
  bad.loss_pct = 150;
  EXPECT_EQ(a->set_impairment(bad).error(), Status::kInvalidData);
  ASSERT_EQ(*send_one(*a, make_frame(MacAddress::local(2), MacAddress::local(1), 1, 64)), 1u);
  EXPECT_EQ(receive(*b, 1).size(), 1u);
}

}  // namespace
}  // namespace emulator
