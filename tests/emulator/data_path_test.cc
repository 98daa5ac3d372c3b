#include "emulator/data_path.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>

#include "emulator/mem_link.h"
#include "miniport/byte_order.h"
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

// Two nodes on the memory wire with a PVC: A sends on label 200 (B's), B
// receives on 200 and A on 100.
struct Rig {
  std::unique_ptr<MemLink> la, lb;
  Miniport ma{{.mac = kMacA}}, mb{{.mac = kMacB}};
  Checker ha, hb;
  std::unique_ptr<DataPath> da, db;
  VcId va, vb;

  explicit Rig(DataPathOptions o = {}, MemLinkOptions lo = {}) {
    auto p = MemLink::make_pair(lo);
    la = std::move(p->first);
    lb = std::move(p->second);
    va = *ma.vcs().create(1);
    vb = *mb.vcs().create(2);
    EXPECT_TRUE(ma.vcs().activate(va, VcParams{.peer = kMacB, .tx_vci = 200, .pvc_rx_vci = 100}));
    EXPECT_TRUE(mb.vcs().activate(vb, VcParams{.peer = kMacA, .tx_vci = 100, .pvc_rx_vci = 200}));
    da = std::move(*DataPath::start(*la, ma, ha, o));
    db = std::move(*DataPath::start(*lb, mb, hb, o));
  }
};

TEST(DataPath, MillionFramesOverAPvcInOrderEveryByteChecked) {
  Rig r;
  constexpr uint64_t kFrames = 1'000'000;
  std::jthread sender([&] { EXPECT_EQ(coemu_test::send_seq(*r.da, r.va, 0, kFrames), kFrames); });
  ASSERT_TRUE(wait_for([&] { return r.hb.received_.load() + r.hb.bad_.load() >= kFrames; }, std::chrono::seconds(300)))
      << "received " << r.hb.received_.load();
  sender.join();
  ASSERT_TRUE(wait_for([&] { return r.ha.completed_.load() >= kFrames; }));
  EXPECT_EQ(r.hb.bad_.load(), 0u);
  EXPECT_EQ(r.hb.next_.load(), kFrames);
  EXPECT_EQ(r.ha.ok_.load(), kFrames);
  // Counters agree end to end: sent = received + counted drops (none here).
  const auto& ca = r.ma.counters();
  const auto& cb = r.mb.counters();
  EXPECT_EQ(ca.tx_frames.load(), kFrames);
  EXPECT_EQ(cb.rx_data.load(), kFrames);
  EXPECT_EQ(cb.rx_frames.load(), cb.rx_data + cb.rx_unknown_vci + cb.rx_not_activated + cb.rx_foreign +
                                     cb.rx_malformed + cb.rx_pool_empty + cb.rx_ring_full + cb.rx_not_ours +
                                     cb.rx_not_for_us);
  EXPECT_EQ(ca.tx_outstanding.load(), 0);
  EXPECT_EQ(r.ma.vcs().counters(r.va).tx_frames, kFrames);
  EXPECT_EQ(r.mb.vcs().counters(r.vb).rx_frames, kFrames);
  EXPECT_TRUE(wait_for([&] { return r.da->buffers_in_use() == 0; }, std::chrono::seconds(10)))
      << "every buffer came home";
}

TEST(DataPath, InlineTransmitCarriesEveryFrameInOrder) {
  Rig r({.inline_tx = true});
  constexpr uint64_t kFrames = 200'000;
  std::jthread sender([&] { EXPECT_EQ(coemu_test::send_seq(*r.da, r.va, 0, kFrames), kFrames); });
  ASSERT_TRUE(wait_for([&] { return r.hb.next_.load() + r.hb.bad_.load() >= kFrames; }));
  sender.join();
  EXPECT_EQ(r.hb.bad_.load(), 0u);
  ASSERT_TRUE(wait_for([&] { return r.ha.ok_.load() == kFrames; }));
}

TEST(DataPath, R72SendOnInactiveVcCompletesWithVcNotActivated) {
  Rig r;
  VcId idle = *r.ma.vcs().create(9);
  EXPECT_EQ(coemu_test::send_seq(*r.da, idle, 0, 10), 10u) << "taken, then completed with the reason";
  ASSERT_TRUE(wait_for([&] { return r.ha.completed_.load() == 10; }));
  EXPECT_EQ(r.ha.not_activated_.load(), 10u);
  EXPECT_EQ(r.la->counters().tx_frames, 0u) << "nothing reached the wire";
  EXPECT_EQ(r.ma.counters().tx_not_activated.load(), 10u);
}

TEST(DataPath, R75DeactivationWaitsForReceivesTheOwnerHolds) {
  Rig r;
  r.hb.hold(true);
  ASSERT_EQ(coemu_test::send_seq(*r.da, r.va, 0, 5), 5u);
  ASSERT_TRUE(wait_for([&] { return r.hb.received_.load() == 5; }));
  ASSERT_TRUE(r.mb.vcs().deactivate(r.vb));
  size_t done = 0;
  for (int i = 0; i < 50; ++i) r.mb.vcs().poll_deactivations([&](VcId) { ++done; });
  EXPECT_EQ(done, 0u) << "the owner still holds 5 receives";
  // The holder is the I/O thread's handler; it returns them when told. The
  // test thread may do it here because the I/O thread no longer touches them.
  r.hb.release_held();
  ASSERT_TRUE(wait_for([&] {
    r.mb.vcs().poll_deactivations([&](VcId) { ++done; });
    return done == 1;
  }, std::chrono::seconds(10)));
  EXPECT_TRUE(wait_for([&] { return r.db->buffers_in_use() == 0; }, std::chrono::seconds(10)));
}

TEST(DataPath, FullSendRingIsBackPressureAndNothingIsLost) {
  // The peer never reads and its wire holds 8 frames: the sender's I/O
  // thread keeps the rest pending, the 16-slot send ring fills, and send()
  // starts refusing. Nothing is dropped: stopping aborts what is queued.
  uint64_t taken = 0;
  Checker* ha = nullptr;
  {
    Rig r({.pool_buffers = 256, .tx_ring = 16, .batch = 8, .inline_tx = false}, {.mtu = 1500, .capacity = 8});
    r.db->stop();  // B reads nothing from now on
    std::vector<TxPacket> pkts;
    for (int i = 0; i < 200; ++i) {
      TxPacket p{r.da->alloc(), static_cast<uint64_t>(i)};
      ASSERT_TRUE(p.buf);
      p.buf.set_size(64);
      pkts.push_back(std::move(p));
    }
    ASSERT_TRUE(wait_for([&] {
      taken += r.da->send(r.va, std::span(pkts).subspan(taken));
      return r.ma.counters().tx_ring_full.load() > 0;
    }, std::chrono::seconds(10)));
    EXPECT_LT(taken, 200u);
    EXPECT_TRUE(pkts[taken].buf) << "a packet not taken stays with the caller";
    r.da->stop();
    ha = &r.ha;
    EXPECT_EQ(ha->completed_.load(), taken) << "every taken send completed exactly once";
    EXPECT_EQ(ha->ok_.load() + ha->aborted_.load(), taken);
    EXPECT_GT(ha->aborted_.load(), 0u);
    EXPECT_EQ(r.ma.counters().tx_outstanding.load(), 0);
    pkts.clear();
    EXPECT_EQ(r.da->pool().available(), r.da->pool().buffers()) << "stopped: nothing holds a buffer";
  }
}

// A client that takes every buffer it can and fills the send ring still
// leaves the node room for its own signaling: SETUPs and RELEASEs are not
// dropped to wait for a retransmission behind a data flood.
TEST(DataPath, SignalingFindsRoomWhenDataFilledThePoolAndTheRing) {
  Rig r({.pool_buffers = 256, .tx_ring = 16, .batch = 8, .inline_tx = false}, {.mtu = 1500, .capacity = 8});
  r.db->stop();  // B reads nothing: A's wire and ring fill up
  std::vector<TxPacket> pkts;
  for (;;) {
    TxPacket p{r.da->alloc(), pkts.size()};
    if (!p.buf) break;
    p.buf.set_size(64);
    pkts.push_back(std::move(p));
  }
  EXPECT_LT(pkts.size(), 256u) << "the client got the whole pool";
  EXPECT_GT(r.da->pool().available(), 0u);
  size_t taken = 0;
  ASSERT_TRUE(wait_for([&] {
    taken += r.da->send(r.va, std::span(pkts).subspan(taken));
    return r.ma.counters().tx_ring_full.load() > 0;
  }, std::chrono::seconds(10)));
  std::vector<uint8_t> f(60, 0);
  std::copy(kMacB.bytes.begin(), kMacB.bytes.end(), f.begin());
  std::copy(kMacA.bytes.begin(), kMacA.bytes.end(), f.begin() + 6);
  miniport::store_be16(&f[12], miniport::kEtherTypeSig);
  // Data was refused just now (ring full to its limit, or the I/O thread
  // has since made room): either way signaling gets in.
  EXPECT_TRUE(r.da->send_frame(f)) << "no room left for signaling";
  r.da->stop();
  EXPECT_EQ(r.ha.completed_.load(), taken);
  pkts.clear();
  EXPECT_EQ(r.da->pool().available(), r.da->pool().buffers()) << "stopped: nothing holds a buffer";
}

TEST(DataPath, SignalingGoesUpUnparsedAndForeignTrafficIsCounted) {
  Rig r;
  std::vector<uint8_t> sig(60, 0), other(60, 0);
  std::copy(kMacA.bytes.begin(), kMacA.bytes.end(), sig.begin());
  std::copy(kMacA.bytes.begin(), kMacA.bytes.end(), other.begin());
  miniport::store_be16(&sig[12], miniport::kEtherTypeSig);
  miniport::store_be16(&other[12], 0x0800);
  std::span<const uint8_t> frames[] = {sig, other, sig};
  ASSERT_EQ(*r.lb->send_burst(frames), 3u);
  ASSERT_TRUE(wait_for([&] { return r.ha.sig_.load() == 2 && r.ma.counters().rx_not_ours.load() == 1; },
                       std::chrono::seconds(10)));
  // The handler hears that a batch with SIG frames is over, after its frames
  // and never for a batch without any.
  ASSERT_TRUE(wait_for([&] { return r.ha.sig_done_.load() >= 1; }, std::chrono::seconds(10)));
  EXPECT_LE(r.ha.sig_done_.load(), 2u);
  EXPECT_EQ(r.ha.bad_done_.load(), 0u);
  const std::span<const uint8_t> data_only[] = {other};
  ASSERT_EQ(*r.lb->send_burst(data_only), 1u);
  ASSERT_TRUE(wait_for([&] { return r.ma.counters().rx_not_ours.load() == 2; }, std::chrono::seconds(10)));
  EXPECT_EQ(r.ha.bad_done_.load(), 0u);
}

// SIG frames from send_frame arrive as signaling at the peer, whether the
// I/O thread writes them or the caller does (write_now), none lost, and
// every pool buffer comes back.
TEST(DataPath, SendFrameQueuedOrWrittenNowArrivesInOrder) {
  Rig r;
  std::vector<uint8_t> f(60, 0);
  std::copy(kMacB.bytes.begin(), kMacB.bytes.end(), f.begin());
  std::copy(kMacA.bytes.begin(), kMacA.bytes.end(), f.begin() + 6);
  miniport::store_be16(&f[12], miniport::kEtherTypeSig);
  for (int i = 0; i < 1000; ++i) {
    f[20] = static_cast<uint8_t>(i);
    // Alternate: queued, written now, and a burst of queued behind a write.
    ASSERT_TRUE(r.da->send_frame(f, i % 3 == 1)) << i;
  }
  ASSERT_TRUE(wait_for([&] { return r.hb.sig_.load() == 1000; }, std::chrono::seconds(10))) << r.hb.sig_.load();
  EXPECT_TRUE(wait_for([&] { return r.da->buffers_in_use() == 0; }, std::chrono::seconds(10)));
}

// A frame the caller writes itself onto a link that delays it must still be
// released by the I/O thread when its time comes, though that thread was
// asleep with no deadline when the frame went in.
TEST(DataPath, FrameWrittenNowOnADelayingLinkLeavesAtItsDeadline) {
  Rig r;
  ASSERT_TRUE(r.la->set_impairment(*ImpairmentConfig::parse("delay=5ms,seed=1")));
  std::vector<uint8_t> f(60, 0);
  std::copy(kMacB.bytes.begin(), kMacB.bytes.end(), f.begin());
  miniport::store_be16(&f[12], miniport::kEtherTypeSig);
  // The I/O thread has gone to sleep with nothing due (nothing wakes it).
  ASSERT_TRUE(wait_for([&] { return r.da->counters().sleeps > 0; }, std::chrono::seconds(5)));
  ASSERT_TRUE(r.da->send_frame(f, /*write_now=*/true));
  EXPECT_TRUE(wait_for([&] { return r.hb.sig_.load() == 1; }, std::chrono::seconds(5)));
}

TEST(DataPath, CarrierBecomesLinkStateIndications) {
  Rig r;
  r.da->indicate_carrier(true);
  EXPECT_TRUE(r.ha.link_up_.load());
  r.da->indicate_carrier(true);
  EXPECT_EQ(r.ha.statuses_.load(), 1u) << "no change, no indication";
  r.da->indicate_carrier(false);
  EXPECT_FALSE(r.ha.link_up_.load());
}

// After traffic the I/O thread polls for poll_window, then blocks: an idle
// node does not spin. Each round while it polls is a loop; once asleep the
// loop count stays put.
TEST(DataPath, PollWindowEndsInSleepWhenTrafficStops) {
  // A window far longer than a loaded machine (sanitizers, a parallel build)
  // can stall this thread: the counters are read while it is still open.
  Rig r({.poll_window = std::chrono::seconds(2)});
  ASSERT_EQ(coemu_test::send_seq(*r.da, r.va, 0, 1000), 1000u);
  ASSERT_TRUE(wait_for([&] { return r.hb.next_.load() == 1000; }));
  const auto sleeps = r.db->counters().sleeps;
  const auto polled = r.db->counters().loops;
  EXPECT_TRUE(wait_for([&] { return r.db->counters().loops > polled + 100; }, std::chrono::seconds(10)))
      << "the receiver did not poll after the traffic";
  ASSERT_TRUE(wait_for([&] { return r.db->counters().sleeps > sleeps; }, std::chrono::seconds(10)))
      << "the receiver never went back to sleep";
  // Asleep: a quiet stretch adds no rounds (one for a stray wake-up at most).
  const auto loops = r.db->counters().loops;
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LE(r.db->counters().loops, loops + 1);
}

// With no window the I/O thread blocks as soon as a round moves nothing.
TEST(DataPath, ZeroPollWindowBlocksAtOnce) {
  Rig r({.poll_window = std::chrono::microseconds(0)});
  ASSERT_EQ(coemu_test::send_seq(*r.da, r.va, 0, 1000), 1000u);
  ASSERT_TRUE(wait_for([&] { return r.hb.next_.load() == 1000; }));
  ASSERT_TRUE(wait_for([&] { return r.db->counters().sleeps > 0; }, std::chrono::seconds(10)));
  EXPECT_EQ(r.hb.bad_.load(), 0u);
}

// Counts receives and completions per VC slot, checking each VC's order.
class PerVc : public DataPathHandler {
 public:
  void on_receive(std::span<RxPacket> pkts) override {
    for (RxPacket& p : pkts) {
      const uint32_t s = p.vc().slot % 4;
      if (!coemu_test::payload_ok(p.payload(), next[s].load())) bad.fetch_add(1);
      next[s].fetch_add(1);
    }
  }
  void on_send_complete(std::span<const TxCompletion> done) override {
    for (const auto& c : done) {
      const uint32_t s = c.vc.slot % 4;
      if (c.status == Status::kSuccess) ok[s].fetch_add(1);
      else if (c.status == Status::kResources) resources[s].fetch_add(1);
      else if (c.status == Status::kRequestAborted) aborted[s].fetch_add(1);
      else other.fetch_add(1);
    }
  }
  std::array<std::atomic<uint32_t>, 4> next{}, ok{}, resources{}, aborted{};
  std::atomic<uint32_t> bad{0}, other{0};
};

// Two PVCs from A to B, the first shaped to `rate` bytes/s and `bucket` bytes.
struct ShapedRig {
  ShapedRig(uint32_t rate, uint32_t bucket) {
    auto p = MemLink::make_pair({});
    la = std::move(p->first);
    lb = std::move(p->second);
    shaped = *ma.vcs().create(1);
    plain = *ma.vcs().create(1);
    rx_shaped = *mb.vcs().create(2);
    rx_plain = *mb.vcs().create(2);
    EXPECT_TRUE(ma.vcs().activate(shaped, VcParams{.peer = kMacB, .tx_vci = 200, .pvc_rx_vci = 100,
                                                   .shape_rate = rate, .shape_bucket = bucket}));
    EXPECT_TRUE(ma.vcs().activate(plain, VcParams{.peer = kMacB, .tx_vci = 400, .pvc_rx_vci = 300}));
    EXPECT_TRUE(mb.vcs().activate(rx_shaped, VcParams{.peer = kMacA, .tx_vci = 100, .pvc_rx_vci = 200}));
    EXPECT_TRUE(mb.vcs().activate(rx_plain, VcParams{.peer = kMacA, .tx_vci = 300, .pvc_rx_vci = 400}));
    da = std::move(*DataPath::start(*la, ma, ha, {}));
    db = std::move(*DataPath::start(*lb, mb, hb, {}));
  }
  std::unique_ptr<MemLink> la, lb;
  Miniport ma{{.mac = kMacA}}, mb{{.mac = kMacB}};
  PerVc ha, hb;
  std::unique_ptr<DataPath> da, db;
  VcId shaped, plain, rx_shaped, rx_plain;
};

// A shaped VC never beats its token bucket, delivers everything in order,
// and holds up no other VC: the unshaped one's frames all arrive while the
// shaped ones still trickle out.
TEST(DataPath, ShapedVcKeepsToItsTokenBucketAndHoldsUpNoOtherVc) {
  const uint32_t rate = 100'000, bucket = 1500;  // 100 kB/s
  ShapedRig r(rate, bucket);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(coemu_test::send_seq(*r.da, r.shaped, 0, 100), 100u);
  ASSERT_EQ(coemu_test::send_seq(*r.da, r.plain, 0, 1000), 1000u);
  ASSERT_TRUE(wait_for([&] { return r.hb.next[r.rx_plain.slot % 4].load() == 1000; }, std::chrono::seconds(20)));
  EXPECT_LT(r.hb.next[r.rx_shaped.slot % 4].load(), 100u) << "the unshaped VC waited for the shaped one";
  ASSERT_TRUE(wait_for([&] { return r.hb.next[r.rx_shaped.slot % 4].load() == 100; }, std::chrono::seconds(20)));
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Frames on the wire: 14 + 8 + payload (checker lengths), padded to 60.
  uint64_t wire = 0;
  for (uint32_t seq = 0; seq < 100; ++seq) wire += std::max<size_t>(22 + coemu_test::Checker::expected_len(seq), 60);
  EXPECT_GE(took, static_cast<double>(wire - bucket) / rate) << "faster than the token rate allows";
  EXPECT_EQ(r.hb.bad.load(), 0u);
  EXPECT_TRUE(wait_for([&] { return r.ha.ok[r.shaped.slot % 4].load() == 100; }, std::chrono::seconds(10)));
}

// More than a shaper holds completes with RESOURCES (said, not lost); what
// it holds when the VC is deactivated completes with REQUEST_ABORTED (R71),
// and every buffer comes home.
TEST(DataPath, ShaperOverflowIsResourcesAndDeactivationAbortsWhatWaits) {
  ShapedRig r(1000, 1500);  // 1 kB/s: almost nothing goes
  const uint32_t kSent = 1500;
  ASSERT_EQ(coemu_test::send_seq(*r.da, r.shaped, 0, kSent), kSent);
  const uint32_t s = r.shaped.slot % 4;
  ASSERT_TRUE(wait_for([&] { return r.ha.resources[s].load() > 0; }, std::chrono::seconds(10)));
  ASSERT_TRUE(r.ma.vcs().deactivate(r.shaped));
  ASSERT_TRUE(wait_for([&] {
    return r.ha.ok[s].load() + r.ha.resources[s].load() + r.ha.aborted[s].load() == kSent;
  }, std::chrono::seconds(10)));
  EXPECT_GT(r.ha.aborted[s].load(), 0u);
  EXPECT_EQ(r.ha.other.load(), 0u);
  size_t done = 0;
  EXPECT_TRUE(wait_for([&] {
    r.ma.vcs().poll_deactivations([&](VcId) { ++done; });
    return done == 1;
  }, std::chrono::seconds(10)));
  EXPECT_TRUE(wait_for([&] { return r.da->buffers_in_use() == 0; }, std::chrono::seconds(10)));
}

TEST(DataPath, BusyPollModeCarriesTraffic) {
  Rig r({.busy_poll = true});
  ASSERT_EQ(coemu_test::send_seq(*r.da, r.va, 0, 20000), 20000u);
  ASSERT_TRUE(wait_for([&] { return r.hb.next_.load() == 20000; }));
  EXPECT_EQ(r.hb.bad_.load(), 0u);
  EXPECT_EQ(r.da->counters().sleeps, 0u);
}

// Echoes every packet back from the receive upcall, as a responder or relay
// would; counts what its data path took and refused, and its completions.
class Echo : public DataPathHandler {
 public:
  void on_receive(std::span<RxPacket> pkts) override {
    DataPath* dp = dp_.load(std::memory_order_acquire);
    for (RxPacket& p : pkts) {
      TxPacket t{dp ? dp->alloc() : miniport::BufRef{}, 0};
      if (!t.buf) {
        refused_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      std::memcpy(t.buf.data() + miniport::kFramePayloadOffset, p.payload().data(), p.payload().size());
      t.buf.set_size(static_cast<uint32_t>(p.payload().size()));
      if (dp->send(vc_, std::span(&t, 1)) == 1) taken_.fetch_add(1, std::memory_order_relaxed);
      else refused_.fetch_add(1, std::memory_order_relaxed);
    }
    received_.fetch_add(pkts.size(), std::memory_order_release);
  }
  void on_send_complete(std::span<const TxCompletion> done) override {
    for (const auto& c : done) ok_.fetch_add(c.status == Status::kSuccess, std::memory_order_relaxed);
    completed_.fetch_add(done.size(), std::memory_order_release);
  }
  std::atomic<DataPath*> dp_{nullptr};
  VcId vc_;
  std::atomic<uint64_t> received_{0}, taken_{0}, refused_{0}, completed_{0}, ok_{0};
};

// Counts echoes and checks they come back in the order sent (with gaps
// where the echo side refused a send).
class EchoSink : public DataPathHandler {
 public:
  void on_receive(std::span<RxPacket> pkts) override {
    for (RxPacket& p : pkts) {
      const uint32_t seq = p.payload().size() >= 4 ? miniport::load_be32(p.payload().data()) : 0;
      if (!coemu_test::payload_ok(p.payload(), seq) || (got_ && seq <= last_)) bad_.fetch_add(1);
      last_ = seq;
      got_ = true;
    }
    received_.fetch_add(pkts.size(), std::memory_order_release);
  }
  void on_send_complete(std::span<const TxCompletion> done) override {
    completed_.fetch_add(done.size(), std::memory_order_release);
  }
  std::atomic<uint64_t> received_{0}, completed_{0}, bad_{0};
  uint32_t last_ = 0;
  bool got_ = false;
};

// Sends made from the receive upcall go out in order and complete once, in
// both wait modes. In busy-poll mode the I/O thread writes them itself at
// once; here one upcall's 16 echoes outnumber the 8 slots of the completion
// ring only that thread drains, so it must stop writing inline and queue the
// rest rather than wait on itself.
class DataPathEcho : public ::testing::TestWithParam<bool> {};

TEST_P(DataPathEcho, EchoesFromTheUpcallKeepOrderAndCompleteOnce) {
  auto link = MemLink::make_pair({.capacity = 64});
  ASSERT_TRUE(link);
  Miniport ma{{.mac = kMacA}}, mb{{.mac = kMacB}};
  const VcId va = *ma.vcs().create(1), vb = *mb.vcs().create(2);
  ASSERT_TRUE(ma.vcs().activate(va, VcParams{.peer = kMacB, .tx_vci = 200, .pvc_rx_vci = 100}));
  ASSERT_TRUE(mb.vcs().activate(vb, VcParams{.peer = kMacA, .tx_vci = 100, .pvc_rx_vci = 200}));
  EchoSink sink;
  Echo echo;
  echo.vc_ = vb;
  const DataPathOptions o{.pool_buffers = 512, .tx_ring = 8, .batch = 16, .busy_poll = GetParam()};
  auto da = std::move(*DataPath::start(*link->first, ma, sink, o));
  auto db = std::move(*DataPath::start(*link->second, mb, echo, o));
  echo.dp_.store(db.get(), std::memory_order_release);
  constexpr uint64_t kFrames = 50'000;
  uint64_t sent = 0;
  std::jthread sender([&] { sent = coemu_test::send_seq(*da, va, 0, kFrames, std::chrono::seconds(60)); });
  sender.join();
  EXPECT_EQ(sent, kFrames);
  // Every frame A sent reaches B (the memory wire holds back rather than drops).
  ASSERT_TRUE(wait_for([&] { return echo.received_.load() == sent; }, std::chrono::seconds(30)))
      << echo.received_.load() << " of " << sent;
  ASSERT_TRUE(wait_for([&] { return sink.received_.load() == echo.taken_.load(); }, std::chrono::seconds(30)))
      << sink.received_.load() << " echoes of " << echo.taken_.load();
  ASSERT_TRUE(wait_for([&] { return echo.completed_.load() == echo.taken_.load(); }, std::chrono::seconds(10)));
  EXPECT_GT(echo.taken_.load(), 0u);
  EXPECT_EQ(echo.taken_.load() + echo.refused_.load(), sent);
  EXPECT_EQ(echo.ok_.load(), echo.taken_.load()) << "each echo completed once, successfully";
  EXPECT_EQ(sink.bad_.load(), 0u) << "echoes intact and in order";
  EXPECT_TRUE(wait_for([&] { return db->buffers_in_use() == 0 && da->buffers_in_use() == 0; },
                       std::chrono::seconds(10)));
}

INSTANTIATE_TEST_SUITE_P(Modes, DataPathEcho, ::testing::Values(false, true),
                         [](const auto& i) { return i.param ? "BusyPoll" : "Blocking"; });

// A receive buffer an I/O thread keeps between rounds is not in use: at rest
// buffers_in_use() is 0 while the pool itself is short of them.
TEST(DataPath, IdleReceiveBuffersAreNotInUse) {
  Rig r({.pool_buffers = 256, .batch = 8});
  ASSERT_EQ(coemu_test::send_seq(*r.da, r.va, 0, 1000), 1000u);
  ASSERT_TRUE(wait_for([&] { return r.hb.next_.load() == 1000 && r.ha.completed_.load() == 1000; }));
  // At rest: the last round may have filled every buffer it held, so the
  // I/O thread holds none until its next round takes a batch again.
  EXPECT_TRUE(wait_for([&] {
    return r.db->buffers_in_use() == 0 && r.db->pool().available() < r.db->pool().buffers();
  })) << "B's I/O thread keeps its receive buffers, and they are not in use: " << r.db->buffers_in_use()
      << " in use, " << r.db->pool().available() << " of " << r.db->pool().buffers() << " in the pool";
  r.db->stop();
  EXPECT_EQ(r.db->pool().available(), r.db->pool().buffers()) << "stopped: every buffer back in the pool";
}

// The I/O thread names itself, so top -H and perf can tell it apart.
TEST(DataPath, IoThreadIsNamed) {
  Rig r;
  const auto named = [] {
    size_t n = 0;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      std::getline(comm, name);
      n += name == "coemu-io0";
    }
    return n;
  };
  // A thread names itself as it starts running.
  EXPECT_TRUE(wait_for([&] { return named() == 2; })) << named() << " named; one I/O thread per data path";
}

}  // namespace
}  // namespace emulator
