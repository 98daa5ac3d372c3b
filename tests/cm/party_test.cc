// Point-to-multipoint calls (condis-spec R38, R56-R60; PROTOCOL.md 4):
// a root on one node, leaves on others, explicit clock.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>

#include "cm_net.h"
#include "flowspecs.h"

namespace cm {
namespace {

using Ev = ClientEvent::Kind;
using std::chrono::milliseconds;
using std::chrono::seconds;

const SapSpec kSap{1, {0, 7}};

// A root (node 0) and leaves (nodes 1..n), each leaf's client listening on
// kSap and accepting every call from its callbacks.
struct P2mp {
  explicit P2mp(size_t leaves, CmConfig cfg = {}) : net(names(leaves), cfg) {
    af = net[0].cm->open_af(1, kCoemuAf)->id;
    vc = *net[0].cm->create_vc(af);
    for (size_t i = 1; i < net.size(); ++i) {
      AfOpenId a = net[i].cm->open_af(1, kCoemuAf)->id;
      EXPECT_TRUE(net[i].cm->register_sap(a, kSap));
    }
  }
  static std::vector<std::string> names(size_t leaves) {
    std::vector<std::string> v{"root"};
    for (size_t i = 1; i <= leaves; ++i) v.push_back("leaf" + std::to_string(i));
    return v;
  }
  // Leaf i answers its latest offered call.
  void answer(size_t i, Status s = Status::kSuccess) {
    const ClientEvent* in = net[i].last(Ev::kIncomingCall);
    ASSERT_TRUE(in) << net[i].name << " was offered nothing";
    CmOutput out;
    ASSERT_EQ(net[i].cm->incoming_call_complete(in->vc, s, net.now, out), Status::kSuccess);
    net.take(net[i], out);
    net.settle();
  }
  uint32_t first(size_t leaf) {
    CmOutput out;
    auto p = net[0].cm->make_multipoint_call(vc, net[leaf].name, kSap, net.now, out);
    EXPECT_TRUE(p);
    net.take(net[0], out);
    net.settle();
    answer(leaf);
    return p ? *p : 0;
  }
  uint32_t add(size_t leaf, bool accept = true) {
    CmOutput out;
    auto p = net[0].cm->add_party(vc, net[leaf].name, kSap, net.now, out);
    EXPECT_TRUE(p) << (p ? "" : miniport::to_string(p.error()));
    net.take(net[0], out);
    net.settle();
    if (accept) answer(leaf);
    return p ? *p : 0;
  }
  Status drop(uint32_t party) {
    CmOutput out;
    const Status s = net[0].cm->drop_party(party, net.now, out);
    net.take(net[0], out);
    net.settle();
    return s;
  }
  Status close(size_t node, VcId v) {
    CmOutput out;
    const Status s = net[node].cm->close_call(v, net.now, out);
    net.take(net[node], out);
    net.settle();
    return s;
  }
  std::vector<miniport::LeafTarget> leaves() {
    std::array<miniport::LeafTarget, miniport::kMaxLeaves> t{};
    return {t.begin(), t.begin() + static_cast<long>(net[0].vcs.leaves(vc, t))};
  }
  Net net;
  AfOpenId af;
  VcId vc;
};

TEST(Parties, R38_R56_RootReachesLeavesOnThreeNodesEachWithItsOwnLabel) {
  P2mp p(3);
  const uint32_t p1 = p.first(1);
  ASSERT_NE(p1, 0u);
  const ClientEvent* made = p.net[0].last(Ev::kMakeCallComplete);
  ASSERT_TRUE(made);
  EXPECT_EQ(made->status, Status::kSuccess);
  EXPECT_EQ(made->party, p1) << "R38: the first party's handle comes with the completion";
  const uint32_t p2 = p.add(2), p3 = p.add(3);
  ASSERT_EQ(p.net[0].count(Ev::kAddPartyComplete), 2u);
  EXPECT_EQ(p.net[0].last(Ev::kAddPartyComplete)->party, p3);
  EXPECT_EQ(p.net[0].last(Ev::kAddPartyComplete)->status, Status::kSuccess);
  EXPECT_NE(p2, p3);
  EXPECT_EQ(p.net[0].cm->parties(p.vc), 3u);
  // Each leaf was offered a multipoint call on a VC of its own, active and
  // receive-only; the root's VC holds one target per leaf, with its label.
  auto targets = p.leaves();
  ASSERT_EQ(targets.size(), 3u);
  for (size_t i = 1; i <= 3; ++i) {
    const ClientEvent* in = p.net[i].last(Ev::kIncomingCall);
    ASSERT_TRUE(in);
    EXPECT_TRUE(in->multipoint);
    EXPECT_EQ(in->peer_address, "root");
    ASSERT_TRUE(p.net[i].last(Ev::kCallConnected)) << p.net[i].name;
    EXPECT_EQ(p.net[i].vcs.state(in->vc), miniport::VcState::kActive);
    EXPECT_EQ(p.net[i].vcs.begin_tx(in->vc).status, Status::kNotSupported) << "leaves never send";
    bool found = false;
    for (const auto& t : targets) found |= t.peer == p.net[i].mac && t.tx_vci == p.net[i].vcs.rx_vci(in->vc);
    EXPECT_TRUE(found) << p.net[i].name << "'s label is among the root's targets";
  }
  EXPECT_EQ(p.net[0].vcs.state(p.vc), miniport::VcState::kActive);
}

TEST(Parties, R56_AddPartyNeedsAMultipointCallThatIsUp) {
  P2mp p(2);
  CmOutput out;
  EXPECT_EQ(p.net[0].cm->add_party(p.vc, "leaf1", kSap, p.net.now, out).error(), Status::kFailure) << "no call";
  ASSERT_TRUE(p.net[0].cm->make_multipoint_call(p.vc, "leaf1", kSap, p.net.now, out));
  p.net.take(p.net[0], out);
  EXPECT_EQ(p.net[0].cm->add_party(p.vc, "leaf2", kSap, p.net.now, out).error(), Status::kFailure)
      << "the first party is not up yet";
  p.net.settle();
  p.answer(1);
  EXPECT_EQ(p.net[0].cm->add_party(p.vc, "nobody", kSap, p.net.now, out).error(), Status::kInvalidAddress);
  // A point-to-point call takes no parties.
  VcId pp = *p.net[0].cm->create_vc(p.af);
  ASSERT_EQ(p.net[0].cm->make_call(pp, "leaf2", kSap, p.net.now, out), Status::kPending);
  p.net.take(p.net[0], out);
  p.net.settle();
  p.answer(2);
  EXPECT_EQ(p.net[0].cm->add_party(pp, "leaf1", kSap, p.net.now, out).error(), Status::kFailure);
  EXPECT_EQ(p.net[0].cm->make_call(p.vc, "leaf2", kSap, p.net.now, out), Status::kCallActive);
  EXPECT_EQ(p.net[0].cm->delete_vc(p.vc), Status::kNotAccepted) << "R30: the multipoint call is on it";
}

TEST(Parties, R59_TheLastPartyIsNotDroppedAndCloseCallWaitsForOneParty) {
  P2mp p(2);
  const uint32_t p1 = p.first(1);
  const uint32_t p2 = p.add(2);
  EXPECT_EQ(p.close(0, p.vc), Status::kFailure) << "R59: two parties remain";
  EXPECT_EQ(p.drop(p1), Status::kPending) << "any party, not only the make-call one";
  ASSERT_TRUE(p.net[0].last(Ev::kDropPartyComplete));
  EXPECT_EQ(p.net[0].last(Ev::kDropPartyComplete)->party, p1);
  EXPECT_EQ(p.drop(p1), Status::kFailure) << "R58: the handle died with the drop";
  EXPECT_EQ(p.drop(p2), Status::kFailure) << "R59: the last party goes with close_call";
  EXPECT_EQ(p.net[0].cm->parties(p.vc), 1u);
  EXPECT_EQ(p.leaves().size(), 1u);
  ASSERT_EQ(p.close(0, p.vc), Status::kPending);
  ASSERT_TRUE(p.net[0].last(Ev::kCloseCallComplete));
  EXPECT_EQ(p.net[0].cm->parties(p.vc), 0u);
  EXPECT_NE(p.net[0].vcs.state(p.vc), miniport::VcState::kActive);
  EXPECT_TRUE(p.leaves().empty());
  // Both leaves heard their party go as a close; their clients' closes end it.
  for (size_t i = 1; i <= 2; ++i) {
    const ClientEvent* gone = p.net[i].last(Ev::kIncomingClose);
    ASSERT_TRUE(gone) << p.net[i].name;
    EXPECT_EQ(p.close(i, gone->vc), Status::kPending);
    EXPECT_EQ(p.net[i].cm->calls(), 0u) << p.net[i].name;
  }
  p.net.pump(p.net.now + milliseconds(10));
  EXPECT_EQ(p.net[0].cm->delete_vc(p.vc), Status::kSuccess) << "the VC is the client's again";
}

// R58: the leaf's client is told of the drop as an incoming close, answers
// with its close, and its CM-made VC goes (R66).
TEST(Parties, R58_DroppedLeafHearsAnIncomingCloseAndLosesItsVc) {
  P2mp p(2);
  p.first(1);
  const uint32_t p2 = p.add(2);
  const VcId leaf_vc = p.net[2].last(Ev::kIncomingCall)->vc;
  ASSERT_EQ(p.drop(p2), Status::kPending);
  ASSERT_TRUE(p.net[2].last(Ev::kIncomingClose));
  EXPECT_EQ(p.net[2].last(Ev::kIncomingClose)->vc, leaf_vc);
  EXPECT_EQ(p.close(2, leaf_vc), Status::kPending);
  p.net.pump(p.net.now + milliseconds(10));
  ASSERT_TRUE(p.net[2].last(Ev::kDeleteVc));
  EXPECT_EQ(p.net[2].last(Ev::kDeleteVc)->vc, leaf_vc);
  EXPECT_FALSE(p.net[1].last(Ev::kIncomingClose)) << "the other leaf is undisturbed";
  EXPECT_EQ(p.leaves().size(), 1u);
}

// R60/R67: a leaf that leaves is an incoming drop at the root while other
// parties remain; the last one's leaving is an incoming close.
TEST(Parties, R60_R67_LeafLeavingIsAnIncomingDropAndTheLastOneAnIncomingClose) {
  P2mp p(2);
  const uint32_t p1 = p.first(1);
  const uint32_t p2 = p.add(2);
  const VcId leaf2 = p.net[2].last(Ev::kIncomingCall)->vc;
  ASSERT_EQ(p.close(2, leaf2), Status::kPending);
  const ClientEvent* drop = p.net[0].last(Ev::kIncomingDropParty);
  ASSERT_TRUE(drop);
  EXPECT_EQ(drop->party, p2);
  EXPECT_FALSE(p.net[0].last(Ev::kIncomingClose));
  EXPECT_EQ(p.leaves().size(), 1u) << "no copies to a leaf that left";
  ASSERT_TRUE(p.net[2].last(Ev::kCloseCallComplete));
  // R60: the client answers the incoming drop with drop_party.
  EXPECT_EQ(p.drop(p2), Status::kPending);
  EXPECT_EQ(p.net[0].last(Ev::kDropPartyComplete)->party, p2);
  const VcId leaf1 = p.net[1].last(Ev::kIncomingCall)->vc;
  ASSERT_EQ(p.close(1, leaf1), Status::kPending);
  const ClientEvent* closed = p.net[0].last(Ev::kIncomingClose);
  ASSERT_TRUE(closed) << "R60: the last party leaves as an incoming close";
  EXPECT_EQ(closed->party, p1);
  EXPECT_EQ(p.close(0, p.vc), Status::kPending);
  EXPECT_TRUE(p.net[0].last(Ev::kCloseCallComplete));
  EXPECT_EQ(p.net[0].cm->calls(), 0u);
}

TEST(Parties, R56_AddPartyRefusedByTheLeafOrItsCmCompletesWithTheCause) {
  P2mp p(3);
  p.first(1);
  const uint32_t refused = p.add(2, false);
  p.answer(2, Status::kNotAccepted);
  const ClientEvent* done = p.net[0].last(Ev::kAddPartyComplete);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->party, refused);
  EXPECT_NE(done->status, Status::kSuccess);
  EXPECT_EQ(done->cause, cause::kCallRejected);
  // No SAP at leaf3 for another selector: its CM refuses (cause 88).
  CmOutput out;
  auto other = p.net[0].cm->add_party(p.vc, "leaf3", SapSpec{1, {0, 99}}, p.net.now, out);
  ASSERT_TRUE(other);
  p.net.take(p.net[0], out);
  p.net.settle();
  EXPECT_EQ(p.net[0].last(Ev::kAddPartyComplete)->party, *other);
  EXPECT_EQ(p.net[0].last(Ev::kAddPartyComplete)->cause, cause::kIncompatibleDestination);
  EXPECT_EQ(p.net[0].cm->parties(p.vc), 1u);
  EXPECT_EQ(p.leaves().size(), 1u);
}

// T399: an ADD_PARTY nobody answers fails to the client with cause 102, and
// DROP_PARTY withdraws it from the leaf (whose client never answered).
TEST(Parties, T399_AnUnansweredAddPartyIsRefusedWithCause102) {
  P2mp p(2);
  p.first(1);
  const uint32_t party = p.add(2, /*accept=*/false);
  ASSERT_TRUE(p.net[2].last(Ev::kIncomingCall));
  p.net.pump(p.net.now + seconds(3));
  EXPECT_FALSE(p.net[0].last(Ev::kAddPartyComplete)) << "T399 is 4 s";
  p.net.pump(p.net.now + seconds(2));
  const ClientEvent* done = p.net[0].last(Ev::kAddPartyComplete);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->party, party);
  EXPECT_EQ(done->cause, cause::kRecoveryOnTimerExpiry);
  EXPECT_EQ(p.net[0].cm->parties(p.vc), 1u);
  ASSERT_TRUE(p.net[2].last(Ev::kIncomingClose)) << "DROP_PARTY reached the leaf";
  EXPECT_EQ(p.net[2].last(Ev::kIncomingClose)->vc, p.net[2].last(Ev::kIncomingCall)->vc);
}

// PROTOCOL.md 4: ADD_PARTY for a call a node knows adds a party to it; a
// leaf with two parties of one call leaves with DROP_PARTY for one, and the
// other stays.
TEST(Parties, TwoPartiesOnOneLeafNodeLeaveOneAtATime) {
  P2mp p(1);
  const uint32_t a = p.first(1);
  const VcId va = p.net[1].last(Ev::kIncomingCall)->vc;
  const uint32_t b = p.add(1);
  const VcId vb = p.net[1].last(Ev::kIncomingCall)->vc;
  ASSERT_NE(va, vb);
  EXPECT_EQ(p.net[1].cm->calls(), 2u);
  EXPECT_EQ(p.leaves().size(), 2u);
  ASSERT_EQ(p.close(1, vb), Status::kPending);
  EXPECT_EQ(p.net[0].last(Ev::kIncomingDropParty)->party, b);
  EXPECT_EQ(p.net[1].cm->calls(), 1u) << "the first party stays";
  EXPECT_EQ(p.net[1].count(Ev::kIncomingClose), 0u);
  EXPECT_EQ(p.drop(b), Status::kPending);
  EXPECT_EQ(p.net[0].cm->parties(p.vc), 1u);
  EXPECT_EQ(p.net[0].last(Ev::kMakeCallComplete)->party, a);
}

// 64 parties on 64 nodes; the 65th is refused with RESOURCES.
TEST(Parties, SixtyFourLeavesOnSixtyFourNodes) {
  P2mp p(65);
  p.first(1);
  for (size_t i = 2; i <= 64; ++i) p.add(i);
  EXPECT_EQ(p.net[0].cm->parties(p.vc), 64u);
  EXPECT_EQ(p.net[0].count(Ev::kAddPartyComplete), 63u);
  EXPECT_EQ(p.leaves().size(), 64u);
  for (size_t i = 1; i <= 64; ++i) EXPECT_TRUE(p.net[i].last(Ev::kCallConnected)) << p.net[i].name;
  CmOutput out;
  EXPECT_EQ(p.net[0].cm->add_party(p.vc, "leaf65", kSap, p.net.now, out).error(), Status::kResources);
}

// ---- QoS on point-to-multipoint calls (R57) ----

// A root calling with a guaranteed 10 MB/s stream.
uint32_t first_guaranteed(P2mp& p, size_t leaf) {
  CmOutput out;
  auto party = p.net[0].cm->make_multipoint_call(p.vc, p.net[leaf].name, kSap, p.net.now, out,
                                                 Traffic{guaranteed(10'000'000), {}});
  EXPECT_TRUE(party);
  p.net.take(p.net[0], out);
  p.net.settle();
  p.answer(leaf);
  return party ? *party : 0;
}

uint32_t add_with(P2mp& p, size_t leaf, const std::optional<Traffic>& t) {
  CmOutput out;
  auto party = p.net[0].cm->add_party(p.vc, p.net[leaf].name, kSap, p.net.now, out, t);
  EXPECT_TRUE(party);
  p.net.take(p.net[0], out);
  p.net.settle();
  if (p.net[leaf].last(Ev::kIncomingCall)) p.answer(leaf);
  return party ? *party : 0;
}

TEST(Parties, R57_EveryLeafGetsTheVcsStreamAndTheRootVcIsShapedToIt) {
  P2mp p(2);
  ASSERT_NE(first_guaranteed(p, 1), 0u);
  const ClientEvent* made = p.net[0].last(Ev::kMakeCallComplete);
  ASSERT_TRUE(made);
  ASSERT_EQ(made->status, Status::kSuccess);
  EXPECT_EQ(made->traffic.transmit.token_rate, 10'000'000u);
  EXPECT_EQ(made->traffic.receive.service_type, 0u) << "leaves never send: no traffic back";
  EXPECT_FALSE(made->params_changed);
  // The leaf is offered the stream from its side: it receives 10 MB/s, sends nothing.
  const ClientEvent* in = p.net[1].last(Ev::kIncomingCall);
  EXPECT_EQ(in->traffic.receive.token_rate, 10'000'000u);
  EXPECT_EQ(in->traffic.receive.service_type, 3u);
  EXPECT_EQ(in->traffic.transmit.service_type, 0u);
  // The root's VC is shaped to the rate; the leaf's VC does not send.
  const auto g = p.net[0].vcs.begin_tx(p.vc);
  ASSERT_EQ(g.status, Status::kSuccess);
  p.net[0].vcs.cancel_tx(p.vc);
  EXPECT_TRUE(g.multipoint);
  EXPECT_EQ(g.shape_rate, 10'000'000u);
  EXPECT_EQ(g.shape_bucket, 3000u);

  ASSERT_NE(add_with(p, 2, std::nullopt), 0u);
  const ClientEvent* added = p.net[0].last(Ev::kAddPartyComplete);
  ASSERT_TRUE(added);
  EXPECT_EQ(added->status, Status::kSuccess);
  EXPECT_EQ(added->traffic.transmit.token_rate, 10'000'000u) << "the VC's FLOWSPEC";
  EXPECT_FALSE(added->params_changed);
  EXPECT_EQ(p.net[2].last(Ev::kIncomingCall)->traffic.receive.token_rate, 10'000'000u);
}

TEST(Parties, R57_APartyAskedForWithOtherFlowspecsGetsTheVcsAndIsToldSo) {
  P2mp p(2);
  ASSERT_NE(first_guaranteed(p, 1), 0u);
  ASSERT_NE(add_with(p, 2, Traffic{guaranteed(5'000'000), {}}), 0u);
  const ClientEvent* added = p.net[0].last(Ev::kAddPartyComplete);
  ASSERT_TRUE(added);
  EXPECT_EQ(added->status, Status::kSuccess);
  EXPECT_TRUE(added->params_changed) << "CALL_PARAMETERS_CHANGED: reset to the VC's";
  EXPECT_EQ(added->traffic.transmit.token_rate, 10'000'000u);
  EXPECT_EQ(p.net[2].last(Ev::kIncomingCall)->traffic.receive.token_rate, 10'000'000u)
      << "the leaf is offered what it will get";
}

TEST(Parties, R57_EachLeafsCopyHoldsItsRateOfTheRootsLinkCause49Beyond) {
  P2mp p(3, link(25'000'000));  // room for two 10 MB/s copies, not three
  ASSERT_NE(first_guaranteed(p, 1), 0u);
  const uint32_t p2 = add_with(p, 2, std::nullopt);
  ASSERT_EQ(p.net[0].last(Ev::kAddPartyComplete)->status, Status::kSuccess);
  ASSERT_NE(add_with(p, 3, std::nullopt), 0u);
  const ClientEvent* refused = p.net[0].last(Ev::kAddPartyComplete);
  EXPECT_EQ(refused->status, Status::kIncompatableQos);
  EXPECT_EQ(refused->cause, cause::kQosUnavailable);
  EXPECT_FALSE(p.net[3].last(Ev::kIncomingCall)) << "nothing was offered to leaf3";
  EXPECT_EQ(p.net[0].cm->parties(p.vc), 2u);
  EXPECT_EQ(p.leaves().size(), 2u);

  // A party leaving gives its room back.
  ASSERT_EQ(p.drop(p2), Status::kPending);
  ASSERT_NE(add_with(p, 3, std::nullopt), 0u);
  EXPECT_EQ(p.net[0].last(Ev::kAddPartyComplete)->status, Status::kSuccess);
  EXPECT_EQ(p.net[0].cm->parties(p.vc), 2u);
}

TEST(Parties, R57_ALeafTakesTheStreamAsItComesOrRefusesAndItsLinkMustHoldIt) {
  P2mp p(2, link(8'000'000));  // root and leaves alike: 10 MB/s does not fit anywhere
  CmOutput out;
  auto party = p.net[0].cm->make_multipoint_call(p.vc, p.net[1].name, kSap, p.net.now, out,
                                                 Traffic{guaranteed(6'000'000), {}});
  ASSERT_TRUE(party);
  p.net.take(p.net[0], out);
  p.net.settle();
  const ClientEvent* in = p.net[1].last(Ev::kIncomingCall);
  ASSERT_TRUE(in);
  Traffic less = in->traffic;
  less.receive.token_rate = 1'000'000;
  out = {};
  EXPECT_EQ(p.net[1].cm->incoming_call_complete(in->vc, Status::kSuccess, p.net.now, out, less),
            Status::kInvalidData)
      << "one rate for every leaf: a leaf cannot lower it";
  EXPECT_EQ(p.net[1].cm->incoming_call_complete(in->vc, Status::kSuccess, p.net.now, out, in->traffic),
            Status::kSuccess)
      << "as offered is fine";
  p.net.take(p.net[1], out);
  p.net.settle();
  ASSERT_EQ(p.net[0].last(Ev::kMakeCallComplete)->status, Status::kSuccess);

  // The leaf's party holds 6 of its link's 8 MB/s of receive: a call that
  // would bring 3 more to it is refused there (cause 49).
  AfOpenId af2 = p.net[2].cm->open_af(2, kCoemuAf)->id;
  VcId vc2 = *p.net[2].cm->create_vc(af2);
  out = {};
  ASSERT_EQ(p.net[2].cm->make_call(vc2, p.net[1].name, kSap, p.net.now, out, Traffic{guaranteed(3'000'000), {}}),
            Status::kPending);
  p.net.take(p.net[2], out);
  p.net.settle();
  const ClientEvent* refused = p.net[2].last(Ev::kMakeCallComplete);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->cause, cause::kQosUnavailable);
}

TEST(Parties, R57_ALeafPeerThatTakesTheStreamSlowerIsDroppedWithCause49) {
  P2mp p(2);
  ASSERT_NE(first_guaranteed(p, 1), 0u);
  CmOutput out;
  ASSERT_TRUE(p.net[0].cm->add_party(p.vc, p.net[2].name, kSap, p.net.now, out));
  p.net.take(p.net[0], out);
  p.net.settle();
  const ClientEvent* in = p.net[2].last(Ev::kIncomingCall);
  ASSERT_TRUE(in);
  ASSERT_EQ(p.net[2].cm->incoming_call_complete(in->vc, Status::kSuccess, p.net.now, out), Status::kSuccess);
  // Another implementation's leaf: its ADD_PARTY_ACK takes 1 MB/s of the 10.
  const std::array<uint8_t, 4> ten{0x00, 0x98, 0x96, 0x80}, one{0x00, 0x0F, 0x42, 0x40};
  size_t patched = 0;
  for (auto& f : out.frames) {
    auto at = std::search(f.payload.begin(), f.payload.end(), ten.begin(), ten.end());
    if (at == f.payload.end()) continue;
    std::copy(one.begin(), one.end(), at);  // the receive FLOWSPEC's token rate comes first
    ++patched;
  }
  ASSERT_EQ(patched, 1u);
  p.net.take(p.net[2], out);
  p.net.settle();
  const ClientEvent* done = p.net[0].last(Ev::kAddPartyComplete);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, Status::kIncompatableQos);
  EXPECT_EQ(done->cause, cause::kQosUnavailable);
  EXPECT_EQ(p.net[0].cm->parties(p.vc), 1u);
  EXPECT_EQ(p.leaves().size(), 1u) << "no copy goes to it";
  const ClientEvent* gone = p.net[2].last(Ev::kIncomingClose);
  ASSERT_TRUE(gone) << "the leaf is told to clear the party";
  EXPECT_EQ(gone->cause, cause::kQosUnavailable);
  EXPECT_EQ(p.net[2].cm->calls(), 1u) << "until its client closes it";
}

}  // namespace
}  // namespace cm

namespace cm {
namespace {

// What `coemu show` reads: each party with its state and running timers,
// and the root's VC with its parties.
TEST(CallViews, ShowEachPartyItsStateAndItsRunningTimers) {
  P2mp p(2);
  CmOutput out;
  ASSERT_TRUE(p.net[0].cm->make_multipoint_call(p.vc, "leaf1", kSap, p.net.now, out));
  p.net.take(p.net[0], out);
  // Before the SETUP is delivered: the first party waits with T303 running.
  auto views = p.net[0].cm->call_views(p.net.now + milliseconds(1000));
  ASSERT_EQ(views.size(), 1u);
  EXPECT_EQ(views[0].state, CallState::kCallInitiated);
  EXPECT_EQ(views[0].peer_address, "leaf1");
  EXPECT_TRUE(views[0].originated && views[0].multipoint);
  ASSERT_EQ(views[0].timers.size(), 1u);
  EXPECT_STREQ(views[0].timers[0].name, "T303");
  EXPECT_EQ(views[0].timers[0].left, seconds(3)) << "4 s from the SETUP, read 1 s later";
  p.net.settle();
  p.answer(1);
  ASSERT_TRUE(p.net[0].cm->add_party(p.vc, "leaf2", kSap, p.net.now, out));
  p.net.take(p.net[0], out);
  views = p.net[0].cm->call_views(p.net.now);
  ASSERT_EQ(views.size(), 2u);
  const auto active = std::find_if(views.begin(), views.end(), [](auto& v) { return v.state == CallState::kActive; });
  const auto adding = std::find_if(views.begin(), views.end(), [](auto& v) { return v.state != CallState::kActive; });
  ASSERT_TRUE(active != views.end() && adding != views.end());
  EXPECT_TRUE(active->timers.empty());
  EXPECT_EQ(adding->peer_address, "leaf2");
  EXPECT_EQ(adding->endpoint, 1u);
  ASSERT_EQ(adding->timers.size(), 1u);
  EXPECT_STREQ(adding->timers[0].name, "T399") << "a party offered with ADD_PARTY runs T399";
  p.net.settle();
  p.answer(2);
  const auto vcs = p.net[0].cm->vc_views();
  ASSERT_EQ(vcs.size(), 1u);
  EXPECT_TRUE(vcs[0].root);
  EXPECT_EQ(vcs[0].parties, 2u);
  EXPECT_EQ(vcs[0].vc, p.vc);
  // A leaf sees its party as an incoming call on a VC the CM made.
  const auto leaf = p.net[1].cm->call_views(p.net.now);
  ASSERT_EQ(leaf.size(), 1u);
  EXPECT_FALSE(leaf[0].originated);
  EXPECT_EQ(leaf[0].state, CallState::kActive);
  EXPECT_EQ(p.net[1].cm->vc_views().at(0).vc, leaf[0].vc);
}

}  // namespace
}  // namespace cm
