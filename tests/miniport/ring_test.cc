#include "miniport/ring.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace miniport {
namespace {

TEST(SpscRing, FillsToCapacityThenRefuses) {
  SpscRing<int> r(5);  // rounded up to 8
  EXPECT_EQ(r.capacity(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(r.try_push(i));
  EXPECT_FALSE(r.try_push(99));
  int v;
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(r.try_pop(v));
    EXPECT_EQ(v, i);
  }
  EXPECT_FALSE(r.try_pop(v));
}

TEST(SpscRing, BurstsMoveUpToWhatFitsAcrossTheWrap) {
  SpscRing<uint32_t> r(8);
  std::vector<uint32_t> in(12), out(12);
  for (uint32_t i = 0; i < 12; ++i) in[i] = i;
  EXPECT_EQ(r.push_burst(std::span(in).first(5)), 5u);
  EXPECT_EQ(r.pop_burst(std::span(out).first(3)), 3u);
  EXPECT_EQ(r.push_burst(std::span(in).subspan(5)), 6u) << "8 slots, 2 in use";
  EXPECT_EQ(r.pop_burst(out), 8u);
  EXPECT_EQ((std::vector<uint32_t>(out.begin(), out.begin() + 8)), (std::vector<uint32_t>{3, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(r.pop_burst(out), 0u);
}

TEST(SpscRing, TwoThreadsKeepOrderAndLoseNothing) {
  SpscRing<uint64_t> r(256);
  constexpr uint64_t kN = 1'000'000;
  std::jthread producer([&] {
    uint64_t batch[32];
    uint64_t next = 0;
    while (next < kN) {
      size_t n = 0;
      while (n < 32 && next + n < kN) batch[n] = next + n, ++n;
      next += r.push_burst(std::span(batch, n));
    }
  });
  uint64_t expect = 0, out[32];
  while (expect < kN) {
    const size_t n = r.pop_burst(out);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], expect++);
  }
}

TEST(MpscRing, FillsToCapacityThenRefuses) {
  MpscRing<int> r(4);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(r.try_push(i));
  EXPECT_FALSE(r.try_push(9));
  std::vector<int> burst = {7, 8};
  EXPECT_EQ(r.push_burst(burst), 0u);
  int v;
  ASSERT_TRUE(r.try_pop(v));
  EXPECT_EQ(v, 0);
  EXPECT_EQ(r.push_burst(burst), 1u) << "one slot free";
  int out[8];
  EXPECT_EQ(r.pop_burst(out), 4u);
  EXPECT_EQ(out[3], 7);
}

// push_all takes a group whole or not at all (a multipoint send and its
// copies are never split).
TEST(MpscRing, PushAllTakesTheWholeGroupOrNothing) {
  MpscRing<int> r(8);
  int a[5] = {1, 2, 3, 4, 5};
  ASSERT_EQ(r.push_all(a), 5u);
  int b[4] = {6, 7, 8, 9};
  EXPECT_EQ(r.push_all(b), 0u) << "3 free slots: not room for 4";
  int c[3] = {6, 7, 8};
  ASSERT_EQ(r.push_all(c), 3u);
  int out = 0;
  for (int want = 1; want <= 8; ++want) {
    ASSERT_TRUE(r.try_pop(out));
    EXPECT_EQ(out, want);
  }
  EXPECT_FALSE(r.try_pop(out)) << "nothing of the refused group went in";
  int big[9] = {};
  EXPECT_EQ(r.push_all(big), 0u) << "larger than the ring";
}

TEST(MpscRing, ManyProducersEachKeepTheirOrder) {
  MpscRing<uint64_t> r(1024);
  constexpr uint64_t kPerProducer = 200'000;
  constexpr int kProducers = 4;
  std::vector<std::jthread> producers;
  for (uint64_t p = 0; p < kProducers; ++p)
    producers.emplace_back([&r, p] {
      uint64_t i = 0;
      uint64_t batch[8];
      while (i < kPerProducer) {
        if (i % 3 == 0) {
          if (r.try_push(p << 32 | i)) ++i;
        } else {
          size_t n = 0;
          while (n < 8 && i + n < kPerProducer) batch[n] = p << 32 | (i + n), ++n;
          i += r.push_burst(std::span(batch, n));
        }
      }
    });
  std::vector<uint64_t> next(kProducers, 0);
  uint64_t total = 0, out[64];
  while (total < kPerProducer * kProducers) {
    const size_t n = r.pop_burst(out);
    for (size_t k = 0; k < n; ++k) {
      const uint64_t p = out[k] >> 32, i = out[k] & 0xffffffff;
      ASSERT_LT(p, uint64_t{kProducers});
      ASSERT_EQ(i, next[p]) << "producer " << p;
      ++next[p];
    }
    total += n;
  }
  for (auto n : next) EXPECT_EQ(n, kPerProducer);
}

}  // namespace
}  // namespace miniport
