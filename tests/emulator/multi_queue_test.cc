// Multi-queue TAPs: VCI steering spreads frames over the queues, and the data
// path runs one I/O thread per queue without reordering any VC.
#include <gtest/gtest.h>

#include <poll.h>

#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "emulator/clock.h"
#include "emulator/data_path.h"
#include "emulator/route_netlink.h"
#include "emulator/tap_device.h"
#include "miniport/byte_order.h"
#include "bridged_taps.h"
#include "net_test_util.h"
#include "node_pair.h"

namespace emulator {
namespace {

using miniport::MacAddress;
using miniport::VcParams;
using std::chrono::milliseconds;

const MacAddress kMq = MacAddress::local(0xa);
const MacAddress kPeer = MacAddress::local(0xb);

class MultiQueue : public ::testing::Test {
 protected:
  void SetUp() override {
    COEMU_REQUIRE(coemu_test::enter_fresh_netns());
    auto taps = coemu_test::bridged_taps({{.name = "coemq", .queues = 4}, {.name = "coepeer"}});
    ASSERT_EQ(taps.size(), 2u) << last_error();
    mq_ = std::move(taps[0]);
    peer_ = std::move(taps[1]);
    if (auto r = mq_->steer_by_vci(); !r) GTEST_SKIP() << "no eBPF steering here: " << last_error();
  }
  std::unique_ptr<TapDevice> mq_, peer_;
};

std::vector<uint8_t> data_frame(uint32_t vci, uint32_t seq) {
  std::vector<uint8_t> f(64, 0);
  uint8_t payload[8];
  miniport::store_be32(payload, seq);
  miniport::store_be32(payload + 4, vci);
  EXPECT_TRUE(miniport::encode_data_frame(kMq, kPeer, vci, payload, f).has_value());
  return f;
}

TEST_F(MultiQueue, SteeringPutsEachVciOnItsQueue) {
  std::vector<std::vector<uint8_t>> frames;
  for (uint32_t vci = 100; vci < 108; ++vci) frames.push_back(data_frame(vci, 0));
  std::vector<std::span<const uint8_t>> spans(frames.begin(), frames.end());
  ASSERT_EQ(*peer_->send_burst(spans), frames.size());
  std::map<uint32_t, uint32_t> queue_of;  // vci -> queue it arrived on
  std::vector<uint8_t> buf(1514);
  const auto deadline = steady_now() + std::chrono::seconds(5);
  while (queue_of.size() < frames.size() && steady_now() < deadline) {
    for (uint32_t q = 0; q < 4; ++q) {
      RxFrame slot{{buf.data(), buf.size()}};
      while (*mq_->recv_burst_on(q, std::span(&slot, 1)) == 1) {
        if (slot.len >= 22 && miniport::load_be16(&buf[12]) == miniport::kEtherTypeData)
          queue_of[miniport::load_be32(&buf[14])] = q;
        slot = RxFrame{{buf.data(), buf.size()}};
      }
    }
    pollfd fds[4];
    for (uint32_t q = 0; q < 4; ++q) fds[q] = pollfd{mq_->queue_fd(q), POLLIN, 0};
    (void)::poll(fds, 4, 50);  // wait for the next frame on any queue
  }
  ASSERT_EQ(queue_of.size(), frames.size());
  for (auto [vci, q] : queue_of) EXPECT_EQ(q, vci % 4) << "VCI " << vci;
}

// Counts per VC, checks order per VC, and notes which threads delivered.
class PerVc : public DataPathHandler {
 public:
  void on_receive(std::span<RxPacket> pkts) override {
    std::lock_guard lock(mu_);  // test bookkeeping only
    for (RxPacket& p : pkts) {
      const uint32_t seq = miniport::load_be32(p.payload().data());
      const uint32_t vci = miniport::load_be32(p.payload().data() + 4);
      if (seq != next_[vci]) ++bad_;
      next_[vci] = seq + 1;
      threads_[vci].insert(std::this_thread::get_id());
      ++received_;
    }
  }
  void on_send_complete(std::span<const TxCompletion>) override {}
  std::mutex mu_;
  std::map<uint32_t, uint32_t> next_;
  std::map<uint32_t, std::set<std::thread::id>> threads_;
  std::atomic<uint64_t> received_{0};
  uint64_t bad_ = 0;
};

TEST_F(MultiQueue, OneIoThreadPerQueueKeepsEachVcInOrder) {
  miniport::Miniport mp({.mac = kMq});
  PerVc h;
  for (uint32_t vci = 100; vci < 104; ++vci) {
    VcId vc = *mp.vcs().create(vci);
    ASSERT_TRUE(mp.vcs().activate(vc, VcParams{.peer = kPeer, .tx_vci = 1, .pvc_rx_vci = vci}));
  }
  auto dp = DataPath::start(*mq_, mp, h, {});
  ASSERT_TRUE(dp.has_value()) << last_error();
  constexpr uint32_t kPerVc = 2000;
  for (uint32_t seq = 0; seq < kPerVc; seq += 50) {
    std::vector<std::vector<uint8_t>> frames;
    for (uint32_t k = seq; k < seq + 50; ++k)
      for (uint32_t vci = 100; vci < 104; ++vci) frames.push_back(data_frame(vci, k));
    std::vector<std::span<const uint8_t>> spans(frames.begin(), frames.end());
    ASSERT_EQ(*peer_->send_burst(spans), frames.size());
    const uint64_t want = uint64_t{seq + 50} * 4;
    ASSERT_TRUE(coemu_test::wait_for([&] { return h.received_.load() >= want; }, std::chrono::seconds(10)))
        << h.received_.load() << " of " << want;
  }
  dp->reset();
  EXPECT_EQ(h.bad_, 0u);
  std::set<std::thread::id> all;
  for (uint32_t vci = 100; vci < 104; ++vci) {
    EXPECT_EQ(h.next_[vci], kPerVc);
    EXPECT_EQ(h.threads_[vci].size(), 1u) << "a VC is served by one I/O thread";
    all.insert(h.threads_[vci].begin(), h.threads_[vci].end());
  }
  EXPECT_EQ(all.size(), 4u) << "four queues, four I/O threads";
}

}  // namespace
}  // namespace emulator
