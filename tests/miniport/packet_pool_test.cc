#include "miniport/packet_pool.h"

#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

namespace miniport {
namespace {

TEST(PacketPool, HandsOutEveryBufferThenReportsEmpty) {
  auto pool = PacketPool::create({.buffers = 8, .buffer_size = 256});
  ASSERT_TRUE(pool.has_value());
  std::vector<BufRef> held;
  for (int i = 0; i < 8; ++i) {
    BufRef b = (*pool)->try_get();
    ASSERT_TRUE(b);
    EXPECT_EQ(b.capacity(), 256u);
    held.push_back(std::move(b));
  }
  EXPECT_FALSE((*pool)->try_get()) << "exhaustion is an empty BufRef, not a crash";
  EXPECT_EQ((*pool)->counters().empty, 1u);
  EXPECT_EQ((*pool)->available(), 0u);
  held.pop_back();
  EXPECT_EQ((*pool)->available(), 1u);
  EXPECT_TRUE((*pool)->try_get());
}

TEST(PacketPool, BuffersDoNotOverlap) {
  auto pool = PacketPool::create({.buffers = 16, .buffer_size = 128});
  ASSERT_TRUE(pool.has_value());
  std::vector<BufRef> held(16);
  EXPECT_EQ((*pool)->get_burst(held), 16u);
  for (size_t i = 0; i < held.size(); ++i) std::memset(held[i].data(), static_cast<int>(i), 128);
  for (size_t i = 0; i < held.size(); ++i)
    for (size_t k = 0; k < 128; ++k) ASSERT_EQ(held[i].data()[k], i);
}

TEST(PacketPool, ReleaseAndAdoptMoveOwnershipThroughAnIndex) {
  auto pool = PacketPool::create({.buffers = 2, .buffer_size = 64});
  ASSERT_TRUE(pool.has_value());
  BufRef b = (*pool)->try_get();
  b.set_size(42);
  const uint32_t idx = b.release();
  EXPECT_FALSE(b);
  EXPECT_EQ((*pool)->available(), 1u) << "released, not returned";
  BufRef again = (*pool)->adopt(idx, 42);
  EXPECT_EQ(again.size(), 42u);
  again.reset();
  EXPECT_EQ((*pool)->available(), 2u);
}

TEST(PacketPool, ADoublePutIsCountedAndHarmless) {
  auto pool = PacketPool::create({.buffers = 2, .buffer_size = 64});
  ASSERT_TRUE(pool.has_value());
  BufRef b = (*pool)->try_get();
  const uint32_t idx = b.release();
  { BufRef first = (*pool)->adopt(idx); }
  { BufRef second = (*pool)->adopt(idx); }  // the caller's bug
  EXPECT_EQ((*pool)->counters().double_puts, 1u);
  EXPECT_EQ((*pool)->available(), 2u);
  BufRef x = (*pool)->try_get(), y = (*pool)->try_get();
  EXPECT_TRUE(x && y);
  EXPECT_NE(x.index(), y.index()) << "one buffer must never have two owners";
}

TEST(PacketPool, RejectsBadSizes) {
  EXPECT_EQ(PacketPool::create({.buffers = 0}).error(), Status::kInvalidData);
  EXPECT_EQ(PacketPool::create({.buffers = 4, .buffer_size = 8}).error(), Status::kInvalidData);
}

TEST(PacketPool, ThreadsGetAndPutConcurrently) {
  auto pool = PacketPool::create({.buffers = 64, .buffer_size = 64});
  ASSERT_TRUE(pool.has_value());
  PacketPool& p = **pool;
  std::atomic<uint64_t> got{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 50'000; ++i) {
          BufRef b = p.try_get();
          if (!b) continue;
          // Owners write their mark and see it intact: no buffer is shared.
          std::memset(b.data(), t, 64);
          for (int k = 0; k < 64; ++k) ASSERT_EQ(b.data()[k], t);
          got.fetch_add(1, std::memory_order_relaxed);
        }
      });
  }
  EXPECT_EQ(p.available(), 64u);
  EXPECT_EQ(p.counters().double_puts, 0u);
  EXPECT_GT(got.load(), 0u);
}

}  // namespace
}  // namespace miniport
