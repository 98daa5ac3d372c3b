// Steady state allocates nothing: a counting global operator new watches
// 100,000 frames sent and received through two data paths on the memory wire.
#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

#include "emulator/data_path.h"
#include "emulator/mem_link.h"
#include "node_pair.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<uint64_t> g_allocations{0};
}  // namespace

namespace {
void* counted(std::size_t n, std::size_t align) noexcept {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  if (align <= alignof(std::max_align_t)) return std::malloc(n);
  return std::aligned_alloc(align, (n + align - 1) / align * align);
}
void* counted_or_throw(std::size_t n, std::size_t align) {
  if (void* p = counted(n, align)) return p;
  throw std::bad_alloc();
}
}  // namespace

// Every replaceable form, so nothing slips past the count (or mixes with the
// sanitizer's allocator).
void* operator new(std::size_t n) { return counted_or_throw(n, 0); }
void* operator new[](std::size_t n) { return counted_or_throw(n, 0); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_or_throw(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_or_throw(n, static_cast<std::size_t>(a)); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

namespace emulator {
namespace {

using miniport::MacAddress;
using miniport::VcParams;

TEST(ZeroAlloc, HundredThousandFramesThroughTheEngineAllocateNothing) {
  const MacAddress ma_mac = MacAddress::local(0xa), mb_mac = MacAddress::local(0xb);
  auto pair = MemLink::make_pair({});
  ASSERT_TRUE(pair.has_value());
  miniport::Miniport ma{{.mac = ma_mac}}, mb{{.mac = mb_mac}};
  coemu_test::Checker ha, hb;
  VcId va = *ma.vcs().create(1), vb = *mb.vcs().create(2);
  ASSERT_TRUE(ma.vcs().activate(va, VcParams{.peer = mb_mac, .tx_vci = 200, .pvc_rx_vci = 100}));
  ASSERT_TRUE(mb.vcs().activate(vb, VcParams{.peer = ma_mac, .tx_vci = 100, .pvc_rx_vci = 200}));
  auto da = std::move(*DataPath::start(*pair->first, ma, ha, {}));
  auto db = std::move(*DataPath::start(*pair->second, mb, hb, {}));

  // Warm up: first-touch paths (lazy chunks, thread-local state) run here.
  ASSERT_EQ(coemu_test::send_seq(*da, va, 0, 10'000), 10'000u);
  ASSERT_TRUE(coemu_test::wait_for([&] { return hb.next_.load() == 10'000; }));

  // The counter itself works: it sees this one.
  g_counting = true;
  {
    auto* volatile probe = new std::vector<int>(3);  // volatile: the compiler may not elide it
    delete probe;
  }
  g_counting = false;
  ASSERT_GE(g_allocations.load(), 1u);

  g_allocations = 0;
  g_counting = true;
  const uint64_t taken = coemu_test::send_seq(*da, va, 10'000, 100'000);
  const bool arrived = coemu_test::wait_for([&] { return hb.next_.load() == 110'000; });
  const bool completed = coemu_test::wait_for([&] { return ha.completed_.load() == 110'000; });
  g_counting = false;

  EXPECT_EQ(taken, 100'000u);
  EXPECT_TRUE(arrived);
  EXPECT_TRUE(completed);
  EXPECT_EQ(hb.bad_.load(), 0u);
  EXPECT_EQ(g_allocations.load(), 0u) << "heap allocations on the fast path";
}

}  // namespace
}  // namespace emulator
