#include "miniport/vc_table.h"

#include <gtest/gtest.h>

#include <thread>

namespace miniport {
namespace {

const MacAddress kPeer = MacAddress::local(0xb);
const MacAddress kOther = MacAddress::local(0xc);

VcParams svc(uint32_t tx_vci = 77) { return VcParams{.peer = kPeer, .tx_vci = tx_vci}; }

// Completes pending deactivations (no I/O threads registered: the grace
// period passes at once) and returns how many finished.
size_t drain(VcTable& t) {
  size_t done = 0;
  t.poll_deactivations([&](VcId) { ++done; });
  return done;
}

TEST(VcTable, R27CreateGivesAnInactiveVcWithALabel) {
  VcTable t;
  auto vc = t.create(42);
  ASSERT_TRUE(vc.has_value());
  EXPECT_EQ(t.state(*vc), VcState::kInactive);
  EXPECT_EQ(t.owner(*vc), 42u);
  EXPECT_GE(t.rx_vci(*vc), kPvcVciLimit) << "switched labels sit above the PVC range";
  EXPECT_EQ(t.in_use(), 1u);
}

TEST(VcTable, R32ActivatedVcReceivesFromItsPeerOnly) {
  VcTable t;
  VcId vc = *t.create(7);
  const uint32_t label = t.rx_vci(vc);
  EXPECT_EQ(t.lookup_rx(label, kPeer).miss, VcTable::RxMiss::kNotActivated);
  ASSERT_TRUE(t.activate(vc, svc()));
  auto hit = t.lookup_rx(label, kPeer);
  ASSERT_EQ(hit.miss, VcTable::RxMiss::kNone);
  EXPECT_EQ(hit.id, vc);
  EXPECT_EQ(hit.owner, 7u);
  t.rx_returned(hit.id);
  EXPECT_EQ(t.lookup_rx(label, kOther).miss, VcTable::RxMiss::kForeign);
  EXPECT_EQ(t.lookup_rx(label + 1, kPeer).miss, VcTable::RxMiss::kUnknownVci);
  EXPECT_EQ(t.lookup_rx(0, kPeer).miss, VcTable::RxMiss::kUnknownVci);
}

TEST(VcTable, R32BadParametersAreInvalidData) {
  VcTable t;
  VcId vc = *t.create(1);
  EXPECT_EQ(t.activate(vc, {.peer = MacAddress::broadcast(), .tx_vci = 5}).error(), Status::kInvalidData);
  EXPECT_EQ(t.activate(vc, {.peer = kPeer, .tx_vci = 0}).error(), Status::kInvalidData);
  EXPECT_EQ(t.activate(vc, {.peer = kPeer, .tx_vci = 5, .transmit = false, .receive = false}).error(),
            Status::kInvalidData);
  EXPECT_EQ(t.activate(vc, {.peer = kPeer, .tx_vci = 5, .pvc_rx_vci = kPvcVciLimit}).error(), Status::kInvalidData);
  EXPECT_EQ(t.state(vc), VcState::kInactive);
}

TEST(VcTable, R33FailedReactivationKeepsTheOldParameters) {
  VcTable t;
  VcId vc = *t.create(1);
  ASSERT_TRUE(t.activate(vc, svc(100)));
  EXPECT_EQ(t.begin_tx(vc).tx_vci, 100u);
  t.end_tx(vc, 0, false);
  ASSERT_TRUE(t.activate(vc, svc(200))) << "re-activation with new parameters";
  auto g = t.begin_tx(vc);
  EXPECT_EQ(g.tx_vci, 200u);
  t.end_tx(vc, 0, false);
  EXPECT_EQ(t.activate(vc, {.peer = MacAddress::broadcast(), .tx_vci = 300}).error(), Status::kInvalidData);
  g = t.begin_tx(vc);
  EXPECT_EQ(g.status, Status::kSuccess);
  EXPECT_EQ(g.tx_vci, 200u) << "the failed re-activation changed nothing";
  EXPECT_EQ(g.peer, kPeer);
  t.end_tx(vc, 0, false);
  EXPECT_EQ(t.state(vc), VcState::kActive);
}

TEST(VcTable, R34DeactivationWaitsForSendsAndReceives) {
  VcTable t;
  VcId vc = *t.create(1);
  ASSERT_TRUE(t.activate(vc, svc()));
  const uint32_t label = t.rx_vci(vc);
  ASSERT_EQ(t.begin_tx(vc).status, Status::kSuccess);  // one send in flight
  auto hit = t.lookup_rx(label, kPeer);                // one receive with the owner
  ASSERT_EQ(hit.miss, VcTable::RxMiss::kNone);
  ASSERT_TRUE(t.deactivate(vc));
  EXPECT_EQ(t.state(vc), VcState::kDeactivating);
  EXPECT_EQ(t.lookup_rx(label, kPeer).miss, VcTable::RxMiss::kNotActivated) << "no indications after deactivate";
  EXPECT_EQ(t.begin_tx(vc).status, Status::kVcNotActivated);
  EXPECT_EQ(drain(t), 0u) << "a send is still in flight";
  t.end_tx(vc, 100, true);
  EXPECT_EQ(drain(t), 0u) << "a receive is still with its owner";
  t.rx_returned(hit.id);
  EXPECT_EQ(drain(t), 1u);
  EXPECT_EQ(t.state(vc), VcState::kInactive);
  EXPECT_EQ(t.counters(vc).tx_frames, 1u);
}

TEST(VcTable, R34DeactivateTwiceIsClosingThenNotAccepted) {
  VcTable t;
  VcId vc = *t.create(1);
  EXPECT_EQ(t.deactivate(vc).error(), Status::kNotAccepted) << "never activated";
  ASSERT_TRUE(t.activate(vc, svc()));
  ASSERT_TRUE(t.deactivate(vc));
  EXPECT_EQ(t.deactivate(vc).error(), Status::kClosing);
  EXPECT_EQ(t.activate(vc, svc()).error(), Status::kClosing);
  EXPECT_EQ(drain(t), 1u);
  EXPECT_EQ(t.deactivate(vc).error(), Status::kNotAccepted);
}

TEST(VcTable, R30DeleteOnlyWhenInactive) {
  VcTable t;
  VcId vc = *t.create(1);
  ASSERT_TRUE(t.activate(vc, svc()));
  EXPECT_EQ(t.remove(vc).error(), Status::kNotAccepted);
  ASSERT_TRUE(t.deactivate(vc));
  EXPECT_EQ(t.remove(vc).error(), Status::kClosing);
  drain(t);
  EXPECT_TRUE(t.remove(vc));
  EXPECT_EQ(t.remove(vc).error(), Status::kFailure) << "the handle is dead after delete";
  EXPECT_EQ(t.activate(vc, svc()).error(), Status::kFailure);
  EXPECT_EQ(t.begin_tx(vc).status, Status::kFailure);
  EXPECT_EQ(t.in_use(), 0u);
}

TEST(VcTable, R35ReuseGetsANewLabelSoOldFramesMiss) {
  VcTable t;
  VcId vc = *t.create(1);
  ASSERT_TRUE(t.activate(vc, svc()));
  const uint32_t first = t.rx_vci(vc);
  ASSERT_TRUE(t.deactivate(vc));
  drain(t);
  ASSERT_TRUE(t.activate(vc, svc()));
  const uint32_t second = t.rx_vci(vc);
  EXPECT_NE(first, second);
  EXPECT_EQ(t.lookup_rx(first, kPeer).miss, VcTable::RxMiss::kUnknownVci);
  auto hit = t.lookup_rx(second, kPeer);
  EXPECT_EQ(hit.miss, VcTable::RxMiss::kNone);
  t.rx_returned(hit.id);
}

TEST(VcTable, StaleHandleNeverReachesTheSlotsNextOwner) {
  VcTable t;
  VcId old = *t.create(1);
  ASSERT_TRUE(t.remove(old));
  VcId fresh = *t.create(2);
  EXPECT_EQ(fresh.slot, old.slot) << "slot reused once the grace period passed";
  EXPECT_NE(fresh.gen, old.gen);
  ASSERT_TRUE(t.activate(fresh, svc()));
  EXPECT_EQ(t.begin_tx(old).status, Status::kFailure);
  EXPECT_EQ(t.owner(old), 0u);
  EXPECT_EQ(t.owner(fresh), 2u);
}

TEST(VcTable, PvcLabelsAreConfiguredAndExclusive) {
  VcTable t;
  VcId a = *t.create(1), b = *t.create(2);
  ASSERT_TRUE(t.activate(a, {.peer = kPeer, .tx_vci = 500, .pvc_rx_vci = 100}));
  EXPECT_EQ(t.rx_vci(a), 100u);
  EXPECT_EQ(t.activate(b, {.peer = kPeer, .tx_vci = 501, .pvc_rx_vci = 100}).error(), Status::kInvalidData)
      << "label taken";
  EXPECT_EQ(t.activate(a, {.peer = kPeer, .tx_vci = 500, .pvc_rx_vci = 101}).error(), Status::kInvalidData)
      << "a PVC keeps its label while active";
  auto hit = t.lookup_rx(100, kPeer);
  ASSERT_EQ(hit.miss, VcTable::RxMiss::kNone);
  EXPECT_EQ(hit.id, a);
  t.rx_returned(hit.id);
  ASSERT_TRUE(t.deactivate(a));
  drain(t);
  EXPECT_EQ(t.lookup_rx(100, kPeer).miss, VcTable::RxMiss::kUnknownVci);
  EXPECT_TRUE(t.activate(b, {.peer = kPeer, .tx_vci = 501, .pvc_rx_vci = 100})) << "free again";
}

TEST(VcTable, HoldsAMillionVcs) {
  VcTable t;
  for (uint32_t i = 0; i < kMaxVcs; ++i) ASSERT_TRUE(t.create(i + 1).has_value()) << i;
  EXPECT_EQ(t.in_use(), kMaxVcs);
  EXPECT_EQ(t.create(0).error(), Status::kResources);
  // O(1) lookup at the far end of the table.
  VcId last{kMaxVcs - 1, 0};
  ASSERT_TRUE(t.activate(last, svc()));
  auto hit = t.lookup_rx(t.rx_vci(last), kPeer);
  ASSERT_EQ(hit.miss, VcTable::RxMiss::kNone);
  EXPECT_EQ(hit.owner, kMaxVcs);
  t.rx_returned(hit.id);
}

TEST(VcTable, ReceiveOnlyVcRefusesSends) {
  VcTable t;
  VcId vc = *t.create(1);
  ASSERT_TRUE(t.activate(vc, {.peer = kPeer, .tx_vci = 0, .transmit = false}));
  EXPECT_EQ(t.begin_tx(vc).status, Status::kNotSupported);
}

// An I/O thread looks labels up and returns receives while the control side
// deactivates, deletes and recreates VCs. A deactivation must never complete
// while the reader still holds a receive of that activation, and a hit must
// always belong to the owner the label was issued for. Run under TSan too.
TEST(VcTable, RaceReceiveAgainstDeactivate) {
  VcTable t;
  const uint32_t reader = t.qsbr().register_reader();
  ASSERT_LT(reader, Qsbr::kMaxReaders);
  // (label << 32 | owner) of the current activation, published by control.
  std::atomic<uint64_t> current{0};
  std::atomic<uint64_t> holding{0};  // owner whose receive the reader holds, 0 = none
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> hits{0}, wrong{0};
  std::jthread io([&] {
    t.qsbr().online(reader);
    while (!stop.load(std::memory_order_relaxed)) {
      const uint64_t c = current.load(std::memory_order_acquire);
      const auto label = static_cast<uint32_t>(c >> 32);
      const auto expect_owner = static_cast<uint32_t>(c);
      if (label) {
        auto h = t.lookup_rx(label, kPeer);
        if (h.miss == VcTable::RxMiss::kNone) {
          holding.store(h.owner, std::memory_order_seq_cst);
          if (h.owner != expect_owner) wrong.fetch_add(1);
          hits.fetch_add(1, std::memory_order_relaxed);
          holding.store(0, std::memory_order_seq_cst);
          t.rx_returned(h.id);
        }
      }
      t.qsbr().quiescent(reader);
    }
    t.qsbr().offline(reader);
  });

  uint64_t completed_while_held = 0;
  for (uint32_t owner = 1; owner <= 3000; ++owner) {
    VcId vc = *t.create(owner);
    ASSERT_TRUE(t.activate(vc, svc()));
    const uint64_t before = hits.load();
    current.store(uint64_t{t.rx_vci(vc)} << 32 | owner, std::memory_order_release);
    if (owner % 10 == 0) {
      // Every tenth VC stays up until the reader has hit it, so the race
      // below starts with receives really in flight (bounded wait).
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (hits.load() == before && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    }
    ASSERT_TRUE(t.deactivate(vc));
    bool done = false;
    while (!done) {
      t.poll_deactivations([&](VcId) {
        done = true;
        if (holding.load(std::memory_order_seq_cst) == owner) ++completed_while_held;
      });
      std::this_thread::yield();
    }
    ASSERT_TRUE(t.remove(vc));
  }
  stop = true;
  io.join();
  EXPECT_EQ(completed_while_held, 0u);
  EXPECT_EQ(wrong.load(), 0u);
  EXPECT_GE(hits.load(), 300u) << "the reader must really have raced";
}

}  // namespace
}  // namespace miniport
