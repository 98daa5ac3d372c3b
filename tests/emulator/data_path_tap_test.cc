// The data path over real TAPs: two nodes on one bridge in a namespace of the
// test's own.
#include <gtest/gtest.h>

#include <cstdlib>

#include "emulator/data_path.h"
#include "emulator/route_netlink.h"
#include "emulator/tap_device.h"
#include "bridged_taps.h"
#include "net_test_util.h"
#include "node_pair.h"

namespace emulator {
namespace {

using coemu_test::Checker;
using coemu_test::wait_for;
using miniport::MacAddress;
using miniport::Miniport;
using miniport::VcParams;

const MacAddress kMacA = MacAddress::local(0xa);
const MacAddress kMacB = MacAddress::local(0xb);

class TapNodes : public ::testing::Test {
 protected:
  void SetUp() override {
    COEMU_REQUIRE(coemu_test::enter_fresh_netns());
    taps_ = coemu_test::bridged_taps({{.name = "coet0"}, {.name = "coet1"}});
    ASSERT_EQ(taps_.size(), 2u) << last_error();
    auto w = LinkEventWatcher::open();
    ASSERT_TRUE(w.has_value()) << last_error();
    events_ = std::move(*w);
    va_ = *ma_.vcs().create(1);
    vb_ = *mb_.vcs().create(2);
    ASSERT_TRUE(ma_.vcs().activate(va_, VcParams{.peer = kMacB, .tx_vci = 200, .pvc_rx_vci = 100}));
    ASSERT_TRUE(mb_.vcs().activate(vb_, VcParams{.peer = kMacA, .tx_vci = 100, .pvc_rx_vci = 200}));
    auto a = DataPath::start(*taps_[0], ma_, ha_, {.link_events = events_.get(), .ifname = "coet0"});
    // B receives with read() when the test asks for it, else through io_uring.
    auto b = DataPath::start(*taps_[1], mb_, hb_, {.uring_rx = uring_rx_});
    ASSERT_TRUE(a && b) << last_error();
    da_ = std::move(*a);
    db_ = std::move(*b);
  }
  void TearDown() override {
    da_.reset();
    db_.reset();
  }

  std::vector<std::unique_ptr<TapDevice>> taps_;
  std::unique_ptr<LinkEventWatcher> events_;
  Miniport ma_{{.mac = kMacA}}, mb_{{.mac = kMacB}};
  Checker ha_, hb_;
  VcId va_, vb_;
  std::unique_ptr<DataPath> da_, db_;
  bool uring_rx_ = true;
};

class TapNodesReadRx : public TapNodes {
 protected:
  void SetUp() override {
    uring_rx_ = false;
    TapNodes::SetUp();
  }
};

// Sends kFrames in windows and checks every byte, in order, at B.
void pump(DataPath& da, VcId va, Checker& hb, uint64_t kFrames) {
  // A TAP never pushes back and a full receive queue drops silently, so the
  // sender keeps at most a window of frames unacknowledged by the receiver.
  constexpr uint64_t kWindow = 256;
  uint64_t sent = 0;
  while (sent < kFrames) {
    ASSERT_TRUE(wait_for([&] { return sent - hb.received_.load() < kWindow; }, std::chrono::seconds(10)))
        << "receiver stuck at " << hb.received_.load() << " of " << sent;
    const uint64_t n = std::min<uint64_t>(64, kFrames - sent);
    ASSERT_EQ(coemu_test::send_seq(da, va, static_cast<uint32_t>(sent), n), n);
    sent += n;
  }
  ASSERT_TRUE(wait_for([&] { return hb.received_.load() >= kFrames; }, std::chrono::seconds(30)))
      << hb.received_.load();
  EXPECT_EQ(hb.bad_.load(), 0u);
  EXPECT_EQ(hb.next_.load(), kFrames);
}

TEST_F(TapNodes, HundredThousandFramesOverAPvcEveryByteChecked) {
  constexpr uint64_t kFrames = 100'000;
  if (taps_[1]->io() == TapIo::kIoUring) {
    EXPECT_EQ(db_->uring_receivers(), 1u);
  }
  pump(*da_, va_, hb_, kFrames);
  ASSERT_TRUE(wait_for([&] { return ha_.completed_.load() >= kFrames; }));
  EXPECT_EQ(ha_.ok_.load(), kFrames);
  EXPECT_EQ(ma_.counters().tx_frames.load(), kFrames);
  EXPECT_EQ(mb_.counters().rx_data.load(), kFrames);
  // Whatever else the kernel put on the wire (IPv6 solicitations) is counted
  // as not ours, never parsed.
  const auto& cb = mb_.counters();
  EXPECT_EQ(cb.rx_frames.load(), cb.rx_data + cb.rx_not_ours + cb.rx_not_for_us + cb.rx_sig + cb.rx_unknown_vci + cb.rx_foreign +
                                     cb.rx_not_activated + cb.rx_malformed + cb.rx_bad_vci);
}

TEST_F(TapNodesReadRx, TwentyThousandFramesWithReadReceive) {
  EXPECT_EQ(db_->uring_receivers(), 0u);
  pump(*da_, va_, hb_, 20'000);
}

TEST_F(TapNodes, CarrierEventsBecomeStatusIndications) {
  ASSERT_EQ(std::system("ip link set dev coet0 down"), 0);
  ASSERT_EQ(std::system("ip link set dev coet0 up"), 0);
  ASSERT_TRUE(wait_for([&] { return ha_.statuses_.load() >= 1 && ha_.link_up_.load(); }, std::chrono::seconds(10)));
  ASSERT_TRUE(taps_[0]->set_carrier(false));
  ASSERT_TRUE(wait_for([&] { return !ha_.link_up_.load(); }, std::chrono::seconds(10)));
  EXPECT_FALSE(ma_.link_up());
}

}  // namespace
}  // namespace emulator
