// A point-to-multipoint call over TAPs bridged in a namespace of the test's
// own: one root and three leaves on four nodes (R38, R56-R60, PROTOCOL.md 2).
#include <gtest/gtest.h>

#include "emulator/node.h"
#include "bridged_taps.h"
#include "net_test_util.h"
#include "node_pair.h"
#include "recording_client.h"

namespace emulator {
namespace {

using coemu_test::wait_for;
using miniport::MacAddress;
using Ev = ClientEvent::Kind;
using std::chrono::seconds;

const SapSpec kSap{1, {0, 9}};
constexpr size_t kLeaves = 3;
// What admission hands out on each node: two 200 kB/s copies, not three.
constexpr uint64_t kLinkBytesPerS = 500'000;

class TapMultipoint : public ::testing::Test {
 protected:
  void SetUp() override {
    COEMU_REQUIRE(coemu_test::enter_fresh_netns());
    taps_ = coemu_test::bridged_taps({{.name = "coet0"}, {.name = "coet1"}, {.name = "coet2"}, {.name = "coet3"}});
    ASSERT_EQ(taps_.size(), kLeaves + 1) << last_error();
    for (size_t i = 0; i <= kLeaves; ++i) {
      const std::string name = i == 0 ? "root" : "leaf" + std::to_string(i);
      NodeConfig cfg{.address = name, .mac = MacAddress::local(static_cast<uint32_t>(0x10 + i))};
      cfg.link_bytes_per_s = kLinkBytesPerS;
      auto n = Node::start(*taps_[i], cfg);
      ASSERT_TRUE(n) << last_error();
      nodes_[i] = std::move(*n);
      clients_[i].node = nodes_[i].get();
      clients_[i].accept = i > 0;
      const ClientId id = nodes_[i]->attach(&clients_[i]);
      afs_[i] = *nodes_[i]->open_af(id);
      if (i > 0) {
        ASSERT_TRUE(nodes_[i]->register_sap(afs_[i], kSap));
      }
    }
    for (size_t i = 1; i <= kLeaves; ++i)
      ASSERT_TRUE(wait_for([&] { return nodes_[0]->knows("leaf" + std::to_string(i)); }, seconds(10)));
  }
  void TearDown() override {
    for (auto& n : nodes_) n.reset();
  }
  coemu_test::RecordingClient& root() { return clients_[0]; }
  coemu_test::RecordingClient& leaf(size_t i) { return clients_[i]; }
  // Sends seqs [first, first + n) from the root.
  void send(VcId vc, uint32_t first, uint32_t n) {
    ASSERT_EQ(coemu_test::send_seq(nodes_[0]->data(), vc, first, n), n);
  }

  std::vector<std::unique_ptr<TapDevice>> taps_;
  // Clients before nodes: destroyed after them.
  std::array<coemu_test::RecordingClient, kLeaves + 1> clients_;
  std::array<std::unique_ptr<Node>, kLeaves + 1> nodes_;
  std::array<AfOpenId, kLeaves + 1> afs_;
};

TEST_F(TapMultipoint, RootReplicatesToEveryLeafALateLeafJoinsAndDropsLeaveTheOthersAlone) {
  Node& r = *nodes_[0];
  VcId vc = *r.create_vc(afs_[0]);
  auto p1 = r.make_multipoint_call(vc, "leaf1", kSap);
  ASSERT_TRUE(p1);
  ASSERT_TRUE(wait_for([&] { return root().find(Ev::kMakeCallComplete).has_value(); }, seconds(10)));
  ASSERT_EQ(root().find(Ev::kMakeCallComplete)->status, Status::kSuccess);
  auto p2 = r.add_party(vc, "leaf2", kSap);
  ASSERT_TRUE(p2);
  ASSERT_TRUE(wait_for([&] { return root().count(Ev::kAddPartyComplete) == 1; }, seconds(10)));
  ASSERT_EQ(root().last(Ev::kAddPartyComplete)->status, Status::kSuccess);
  ASSERT_TRUE(wait_for([&] { return leaf(1).find(Ev::kCallConnected) && leaf(2).find(Ev::kCallConnected); },
                       seconds(10)));
  EXPECT_TRUE(leaf(1).find(Ev::kIncomingCall)->multipoint);

  // One copy per leaf, each in order and intact.
  send(vc, 0, 300);
  ASSERT_TRUE(wait_for([&] { return leaf(1).received.load() == 300 && leaf(2).received.load() == 300; }, seconds(20)))
      << leaf(1).received.load() << " " << leaf(2).received.load();

  // A leaf that joins late receives from then on.
  leaf(3).next.store(300);
  auto p3 = r.add_party(vc, "leaf3", kSap);
  ASSERT_TRUE(p3);
  ASSERT_TRUE(wait_for([&] { return root().count(Ev::kAddPartyComplete) == 2; }, seconds(10)));
  ASSERT_TRUE(wait_for([&] { return leaf(3).find(Ev::kCallConnected).has_value(); }, seconds(10)));
  send(vc, 300, 300);
  ASSERT_TRUE(wait_for([&] { return leaf(1).received.load() == 600 && leaf(2).received.load() == 600 &&
                                    leaf(3).received.load() == 300; },
                       seconds(20)));

  // Dropping leaf2 leaves the others receiving.
  ASSERT_EQ(r.drop_party(*p2), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return root().find(Ev::kDropPartyComplete).has_value(); }, seconds(10)));
  ASSERT_TRUE(wait_for([&] { return leaf(2).find(Ev::kCloseCallComplete).has_value(); }, seconds(10)));
  send(vc, 600, 200);
  ASSERT_TRUE(wait_for([&] { return leaf(1).received.load() == 800 && leaf(3).received.load() == 500; }, seconds(20)));
  EXPECT_EQ(leaf(2).received.load(), 600u);

  // leaf3 hangs up: an incoming drop at the root (R60), answered with drop_party.
  VcId leaf3_vc = leaf(3).find(Ev::kIncomingCall)->vc;
  ASSERT_EQ(nodes_[3]->close_call(leaf3_vc), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return root().find(Ev::kIncomingDropParty).has_value(); }, seconds(10)));
  EXPECT_EQ(root().find(Ev::kIncomingDropParty)->party, *p3);
  ASSERT_EQ(r.drop_party(*p3), Status::kPending);
  EXPECT_EQ(r.drop_party(*p1), Status::kFailure) << "R59: the last party";
  ASSERT_EQ(r.close_call(vc), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return root().find(Ev::kCloseCallComplete).has_value(); }, seconds(10)));
  ASSERT_TRUE(wait_for([&] { return leaf(1).find(Ev::kCloseCallComplete).has_value(); }, seconds(10)));

  for (size_t i = 1; i <= kLeaves; ++i) EXPECT_EQ(leaf(i).bad.load(), 0u) << "leaf" << i;
  // Each send completed once however many copies it made, and every copy's
  // buffer came back.
  ASSERT_TRUE(wait_for([&] { return root().completed.load() == 800; }, seconds(10))) << root().completed.load();
  EXPECT_TRUE(wait_for([&] { return r.data().buffers_in_use() == 0; }, seconds(10)));
  EXPECT_TRUE(wait_for([&] { return r.delete_vc(vc) == Status::kSuccess; }, seconds(10)));
  for (size_t i = 0; i <= kLeaves; ++i)
    EXPECT_TRUE(wait_for([&] { return nodes_[i]->calls() == 0; }, seconds(10))) << i;
  for (size_t i = 1; i <= kLeaves; ++i)
    EXPECT_TRUE(wait_for([&] { return nodes_[i]->vcs_in_use() == 0; }, seconds(10))) << "leaf" << i;
}

// QoS over TAPs (R57): a guaranteed stream reaches every leaf in order, each
// at no more than the token rate; each copy holds its rate of the root's
// link, so a third leaf does not fit and is refused with cause 49.
TEST_F(TapMultipoint, GuaranteedStreamReachesEveryLeafShapedAndALeafBeyondTheLinkIsRefused) {
  Node& r = *nodes_[0];
  VcId vc = *r.create_vc(afs_[0]);
  cm::Traffic t;
  t.transmit.service_type = 3;
  t.transmit.token_rate = 200'000;
  t.transmit.bucket = 1500;
  ASSERT_TRUE(r.make_multipoint_call(vc, "leaf1", kSap, t));
  ASSERT_TRUE(wait_for([&] { return root().find(Ev::kMakeCallComplete).has_value(); }, seconds(10)));
  ASSERT_EQ(root().find(Ev::kMakeCallComplete)->status, Status::kSuccess);
  ASSERT_TRUE(r.add_party(vc, "leaf2", kSap));
  ASSERT_TRUE(wait_for([&] { return root().count(Ev::kAddPartyComplete) == 1; }, seconds(10)));
  ASSERT_EQ(root().last(Ev::kAddPartyComplete)->status, Status::kSuccess);
  ASSERT_TRUE(r.add_party(vc, "leaf3", kSap));
  ASSERT_TRUE(wait_for([&] { return root().count(Ev::kAddPartyComplete) == 2; }, seconds(10)));
  EXPECT_EQ(root().last(Ev::kAddPartyComplete)->status, Status::kIncompatableQos);
  EXPECT_EQ(root().last(Ev::kAddPartyComplete)->cause, cm::cause::kQosUnavailable);
  ASSERT_TRUE(wait_for([&] { return leaf(1).find(Ev::kCallConnected) && leaf(2).find(Ev::kCallConnected); },
                       seconds(10)));
  for (size_t i = 1; i <= 2; ++i) EXPECT_EQ(leaf(i).find(Ev::kIncomingCall)->traffic.receive, t.transmit) << i;
  EXPECT_FALSE(leaf(3).find(Ev::kIncomingCall).has_value());

  const auto start = std::chrono::steady_clock::now();
  send(vc, 0, 100);
  ASSERT_TRUE(wait_for([&] { return leaf(1).received.load() == 100 && leaf(2).received.load() == 100; }, seconds(20)))
      << leaf(1).received.load() << " " << leaf(2).received.load();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  uint64_t wire = 0;
  for (uint32_t seq = 0; seq < 100; ++seq) wire += std::max<size_t>(22 + coemu_test::Checker::expected_len(seq), 60);
  EXPECT_GE(took, static_cast<double>(wire - 1500) / 200'000) << "a leaf got it faster than the token rate";
  for (size_t i = 1; i <= 2; ++i) EXPECT_EQ(leaf(i).bad.load(), 0u) << "leaf" << i;
  ASSERT_TRUE(wait_for([&] { return root().completed.load() == 100; }, seconds(10)));
  EXPECT_TRUE(wait_for([&] { return r.data().buffers_in_use() == 0; }, seconds(10)))
      << "every copy's buffer came back";
}

}  // namespace
}  // namespace emulator
