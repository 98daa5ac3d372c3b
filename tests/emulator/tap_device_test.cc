#include "emulator/tap_device.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <thread>

#include "emulator/clock.h"
#include "emulator/link_events.h"
#include "emulator/route_netlink.h"
#include "frames.h"
#include "net_test_util.h"

namespace emulator {
namespace {

using coemu_test::frame_intact;
using coemu_test::frame_seq;
using coemu_test::is_test_frame;
using coemu_test::make_frame;
using miniport::MacAddress;
using std::chrono::milliseconds;

// Two TAPs on one bridge, in a namespace of the test's own that vanishes with
// the test process (nothing to clean up, even after a crash).
class TapPair : public ::testing::Test {
 protected:
  void SetUp() override {
    COEMU_REQUIRE(coemu_test::enter_fresh_netns());
    auto nl = RouteNetlink::open();
    ASSERT_TRUE(nl.has_value()) << last_error();
    nl_.emplace(std::move(*nl));
    ASSERT_TRUE(nl_->set_up("lo", true)) << last_error();
    ASSERT_TRUE(nl_->add_bridge("coebr0")) << last_error();
    for (const char* name : {"coet0", "coet1"}) {
      auto tap = TapDevice::open({.name = name});
      ASSERT_TRUE(tap.has_value()) << last_error();
      ASSERT_TRUE(nl_->enslave("coebr0", name)) << last_error();
      ASSERT_TRUE(nl_->set_up(name, true)) << last_error();
      taps_.push_back(std::move(*tap));
    }
    ASSERT_TRUE(nl_->set_up("coebr0", true)) << last_error();
  }

  // Receives test frames (other traffic such as IPv6 router solicitations is
  // skipped) until `want` arrived or 5 s passed.
  std::vector<std::vector<uint8_t>> receive(TapDevice& t, size_t want) {
    std::vector<std::vector<uint8_t>> got;
    const size_t cap = t.mtu() + 14;
    std::vector<uint8_t> storage(32 * cap);
    std::vector<RxFrame> slots(32);
    const auto deadline = steady_now() + std::chrono::seconds(5);
    while (got.size() < want && steady_now() < deadline) {
      for (size_t i = 0; i < slots.size(); ++i) slots[i] = RxFrame{{&storage[i * cap], cap}};
      auto n = t.recv_burst(slots);
      EXPECT_TRUE(n.has_value()) << last_error();
      if (!n || *n == 0) {
        (void)t.wait_readable(milliseconds(50));
        continue;
      }
      for (size_t i = 0; i < *n; ++i) {
        std::span<const uint8_t> f(slots[i].buf.data(), slots[i].len);
        if (is_test_frame(f)) got.emplace_back(f.begin(), f.end());
      }
    }
    return got;
  }

  std::optional<RouteNetlink> nl_;
  std::vector<std::unique_ptr<TapDevice>> taps_;
};

TEST_F(TapPair, ExchangeTenThousandFramesBothWaysVerified) {
  const auto ma = MacAddress::local(0xa), mb = MacAddress::local(0xb);
  const uint32_t max = taps_[0]->mtu() + 14;  // 1514 at MTU 1500
  auto size_of = [&](uint32_t i) { return 64 + (i * 97) % (max - 64 + 1); };
  constexpr uint32_t kFrames = 10000, kWindow = 64;
  uint32_t got_ab = 0, got_ba = 0;
  // Lock-step windows: a TAP never pushes back and a full queue drops
  // silently, so the test keeps at most one window in flight each way.
  for (uint32_t base = 0; base < kFrames; base += kWindow) {
    std::vector<std::vector<uint8_t>> ab, ba;
    for (uint32_t i = base; i < base + kWindow; ++i) {
      ab.push_back(make_frame(mb, ma, i, size_of(i)));
      ba.push_back(make_frame(ma, mb, i, size_of(kFrames - i)));
    }
    std::vector<std::span<const uint8_t>> sab(ab.begin(), ab.end()), sba(ba.begin(), ba.end());
    ASSERT_EQ(*taps_[0]->send_burst(sab), kWindow) << last_error();
    ASSERT_EQ(*taps_[1]->send_burst(sba), kWindow) << last_error();
    auto at_b = receive(*taps_[1], kWindow);
    auto at_a = receive(*taps_[0], kWindow);
    ASSERT_EQ(at_b.size(), kWindow) << "window at " << base;
    ASSERT_EQ(at_a.size(), kWindow) << "window at " << base;
    for (uint32_t k = 0; k < kWindow; ++k) {
      const uint32_t i = base + k;
      ASSERT_EQ(frame_seq(at_b[k]), i);
      ASSERT_TRUE(frame_intact(at_b[k], size_of(i))) << "a->b frame " << i;
      ASSERT_EQ(frame_seq(at_a[k]), i);
      ASSERT_TRUE(frame_intact(at_a[k], size_of(kFrames - i))) << "b->a frame " << i;
    }
    got_ab += kWindow;
    got_ba += kWindow;
  }
  EXPECT_GE(got_ab, kFrames);
  EXPECT_GE(got_ba, kFrames);
  EXPECT_EQ(taps_[0]->counters().tx_errors, 0u);
}

TEST_F(TapPair, MtuAndMacChangesReadBackOverNetlink) {
  ASSERT_TRUE(nl_->set_mtu("coet0", 9000)) << last_error();
  EXPECT_EQ(nl_->get_link("coet0")->mtu, 9000u);
  EXPECT_EQ(*taps_[0]->refresh_mtu(), 9000u);
  // The largest TAP MTU: 65521 + 14-byte header = a 65535-byte frame.
  ASSERT_TRUE(nl_->set_mtu("coet1", 65521)) << last_error();
  EXPECT_EQ(nl_->get_link("coet1")->mtu, 65521u);
  EXPECT_EQ(*taps_[1]->refresh_mtu(), 65521u);
  EXPECT_EQ(nl_->set_mtu("coet1", 65535).error(), Status::kInvalidData);
  EXPECT_NE(last_error().find("coet1"), std::string::npos);
  EXPECT_NE(last_error().find("maximum"), std::string::npos) << last_error();
  EXPECT_EQ(nl_->get_link("coet1")->mtu, 65521u) << "a refused change changes nothing";

  const auto mac = *MacAddress::parse("02:c0:e0:00:00:42");
  ASSERT_TRUE(nl_->set_mac("coet0", mac)) << last_error();
  EXPECT_EQ(nl_->get_link("coet0")->mac, mac);

  ASSERT_TRUE(nl_->add_address("coet0", "10.77.0.1/24")) << last_error();
  ASSERT_TRUE(nl_->add_address("coet0", "10.77.0.1/24")) << "adding twice is idempotent";
  auto addrs = nl_->addresses("coet0");
  ASSERT_TRUE(addrs.has_value());
  EXPECT_NE(std::find(addrs->begin(), addrs->end(), "10.77.0.1/24"), addrs->end());
  EXPECT_EQ(nl_->add_address("coet0", "10.77.0.300/24").error(), Status::kInvalidAddress);
  EXPECT_EQ(nl_->get_link("coenope").error(), Status::kAdapterRemoved);
  EXPECT_NE(last_error().find("coenope"), std::string::npos);
}

TEST_F(TapPair, MovesToAnotherNamespaceAndKeepsWorking) {
  auto other = Netns::create_anonymous();
  ASSERT_TRUE(other.has_value()) << last_error();
  ASSERT_TRUE(nl_->move_to("coet0", *other)) << last_error();
  EXPECT_EQ(nl_->get_link("coet0").error(), Status::kAdapterRemoved) << "gone from here";
  auto there = RouteNetlink::open_in(*other);
  ASSERT_TRUE(there.has_value()) << last_error();
  auto li = there->get_link("coet0");
  ASSERT_TRUE(li.has_value()) << last_error();
  EXPECT_EQ(li->kind, "tun");
  EXPECT_FALSE(li->up) << "a moved link arrives down";
  ASSERT_TRUE(there->set_up("coet0", true)) << last_error();
  // The fd opened before the move still drives the device.
  ASSERT_TRUE(taps_[0]->set_carrier(false)) << last_error();
  EXPECT_FALSE(there->get_link("coet0")->lower_up);
  ASSERT_TRUE(taps_[0]->set_carrier(true)) << last_error();
  EXPECT_TRUE(there->get_link("coet0")->lower_up);
}

// Waits up to 5 s for an event on `name` matching pred.
template <class Pred>
bool wait_event(LinkEventWatcher& w, const std::string& name, Pred pred) {
  const auto deadline = steady_now() + std::chrono::seconds(5);
  while (steady_now() < deadline) {
    auto evs = w.poll(milliseconds(100));
    if (!evs) return false;
    for (const auto& e : *evs)
      if (e.name == name && pred(e)) return true;
  }
  return false;
}

TEST_F(TapPair, IpLinkDownUpIsSeenAsCarrierEvents) {
  auto w = LinkEventWatcher::open();
  ASSERT_TRUE(w.has_value()) << last_error();
  ASSERT_EQ(std::system("ip link set dev coet0 down"), 0);
  EXPECT_TRUE(wait_event(**w, "coet0", [](const LinkEvent& e) { return !e.up && !e.carrier; }));
  ASSERT_EQ(std::system("ip link set dev coet0 up"), 0);
  EXPECT_TRUE(wait_event(**w, "coet0", [](const LinkEvent& e) { return e.up && e.carrier; }));
}

TEST_F(TapPair, SetCarrierIsSeenAsCarrierEvents) {
  auto w = LinkEventWatcher::open();
  ASSERT_TRUE(w.has_value()) << last_error();
  ASSERT_TRUE(taps_[1]->set_carrier(false)) << last_error();
  EXPECT_TRUE(wait_event(**w, "coet1", [](const LinkEvent& e) { return e.up && !e.carrier; }));
  EXPECT_FALSE(nl_->get_link("coet1")->lower_up);
  ASSERT_TRUE(taps_[1]->set_carrier(true)) << last_error();
  EXPECT_TRUE(wait_event(**w, "coet1", [](const LinkEvent& e) { return e.up && e.carrier; }));
}

TEST_F(TapPair, LossImpairmentOnTheTapSendPath) {
  ASSERT_TRUE(taps_[0]->set_impairment(*ImpairmentConfig::parse("loss=50%,seed=5")));
  const auto ma = MacAddress::local(0xa), mb = MacAddress::local(0xb);
  std::vector<std::vector<uint8_t>> frames;
  for (uint32_t i = 0; i < 200; ++i) frames.push_back(make_frame(mb, ma, i, 100));
  std::vector<std::span<const uint8_t>> spans(frames.begin(), frames.end());
  ASSERT_EQ(*taps_[0]->send_burst(spans), 200u);
  const auto lost = taps_[0]->impairment_counters().dropped_loss;
  EXPECT_GT(lost, 50u);
  EXPECT_LT(lost, 150u);
  auto got = receive(*taps_[1], 200 - lost);
  EXPECT_EQ(got.size(), 200 - lost);
}

// A TAP has no thread of its own: delayed frames leave when the owner calls
// flush_due() at next_deadline(), as the node's I/O loop does.
TEST_F(TapPair, DelayedFramesLeaveAtTheDeadlineOnFlush) {
  ASSERT_TRUE(taps_[0]->set_impairment(*ImpairmentConfig::parse("delay=100ms")));
  const auto f = make_frame(MacAddress::local(0xb), MacAddress::local(0xa), 1, 100);
  std::span<const uint8_t> fs(f);
  const auto t0 = steady_now();
  ASSERT_EQ(*taps_[0]->send_burst(std::span(&fs, 1)), 1u);
  auto due = taps_[0]->next_deadline();
  ASSERT_TRUE(due.has_value());
  EXPECT_GE(*due, t0 + milliseconds(100));
  taps_[0]->flush_due();
  EXPECT_EQ(taps_[0]->impairment_counters().frames_out, 0u) << "released before its time";
  std::this_thread::sleep_until(std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(*due)));
  taps_[0]->flush_due();
  EXPECT_EQ(taps_[0]->impairment_counters().frames_out, 1u);
  EXPECT_FALSE(taps_[0]->next_deadline().has_value());
  auto got = receive(*taps_[1], 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(frame_intact(got[0], 100));
  EXPECT_GE(steady_now() - t0, milliseconds(100));
}

// Both transmit backends put every frame on the wire, in order, intact.
TEST(TapDevice, WriteAndIoUringBackendsDeliverInOrder) {
  COEMU_REQUIRE(coemu_test::enter_fresh_netns());
  auto nl = RouteNetlink::open();
  ASSERT_TRUE(nl.has_value());
  ASSERT_TRUE(nl->add_bridge("coebr0"));
  auto rx = TapDevice::open({.name = "coerx"});
  ASSERT_TRUE(rx.has_value()) << last_error();
  for (auto io : {TapIo::kWrite, TapIo::kIoUring}) {
    const std::string name = io == TapIo::kWrite ? "coetxw" : "coetxu";
    auto tx = TapDevice::open({.name = name, .io = io});
    if (!tx && io == TapIo::kIoUring) GTEST_SKIP() << "io_uring refused here: " << last_error();
    ASSERT_TRUE(tx.has_value()) << last_error();
    EXPECT_EQ((*tx)->io(), io);
    for (const std::string& n : {name, std::string("coerx")}) {
      ASSERT_TRUE(nl->enslave("coebr0", n));
      ASSERT_TRUE(nl->set_up(n, true));
    }
    ASSERT_TRUE(nl->set_up("coebr0", true));
    std::vector<std::vector<uint8_t>> frames;
    for (uint32_t i = 0; i < 100; ++i)
      frames.push_back(make_frame(MacAddress::local(0xb), MacAddress::local(0xa), i, 64 + i * 14));
    std::vector<std::span<const uint8_t>> spans(frames.begin(), frames.end());
    ASSERT_EQ(*(*tx)->send_burst(spans), 100u);
    EXPECT_EQ((*tx)->counters().tx_errors, 0u);
    std::vector<std::vector<uint8_t>> got;
    std::vector<uint8_t> buf(1514);
    const auto deadline = steady_now() + std::chrono::seconds(5);
    while (got.size() < 100 && steady_now() < deadline) {
      (void)(*rx)->wait_readable(milliseconds(50));
      RxFrame slot{{buf.data(), buf.size()}};
      while (*(*rx)->recv_burst(std::span(&slot, 1)) == 1) {
        std::span<const uint8_t> f(buf.data(), slot.len);
        if (is_test_frame(f)) got.emplace_back(f.begin(), f.end());
        slot = RxFrame{{buf.data(), buf.size()}};
      }
    }
    ASSERT_EQ(got.size(), 100u) << name;
    for (uint32_t i = 0; i < 100; ++i) {
      EXPECT_EQ(frame_seq(got[i]), i) << name;
      EXPECT_TRUE(frame_intact(got[i], 64 + i * 14)) << name;
    }
    ASSERT_TRUE(nl->delete_link(name));
  }
}

TEST(TapDevice, OpensInAnotherNamespaceAndRejectsBadInput) {
  COEMU_REQUIRE(coemu_test::enter_fresh_netns());
  EXPECT_EQ(TapDevice::open({.name = "this-name-is-too-long"}).error(), Status::kInvalidData);
  EXPECT_EQ(TapDevice::open({.name = "coe0", .queues = 0}).error(), Status::kInvalidData);
  auto first = TapDevice::open({.name = "coedup"});
  ASSERT_TRUE(first.has_value()) << last_error();
  EXPECT_EQ(TapDevice::open({.name = "coedup"}).error(), Status::kNotAccepted);
  EXPECT_EQ(TapDevice::open({.name = "coemissing", .attach = true}).error(), Status::kAdapterRemoved);

  auto mq = TapDevice::open({.name = "coemq%d", .queues = 4});
  ASSERT_TRUE(mq.has_value()) << last_error();
  EXPECT_EQ((*mq)->queues(), 4u);
  EXPECT_EQ((*mq)->name(), "coemq0");
}

}  // namespace
}  // namespace emulator
