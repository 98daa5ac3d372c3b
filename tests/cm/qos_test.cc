// QoS on calls (condis-spec R42, R44; PROTOCOL.md TRAFFIC): FLOWSPECs carried
// both ways, the callee lowering them, admission per link (cause 49), and a
// VC shaped to its transmit FLOWSPEC.
#include <gtest/gtest.h>

#include "cm_lab.h"
#include "flowspecs.h"

namespace cm {
namespace {

// The token rate a VC's sends are shaped to (0: not shaped; -1: cannot send).
int64_t shaped_at(miniport::VcTable& t, VcId vc) {
  const auto g = t.begin_tx(vc);
  if (g.status != Status::kSuccess) return -1;
  t.cancel_tx(vc);
  return g.shape_rate;
}

struct Qos {
  explicit Qos(CmConfig a = {}, CmConfig b = {}) : l(a, b) {
    l.start();
    af_b = l.b.open_af(2, kCoemuAf)->id;
    EXPECT_TRUE(l.b.register_sap(af_b, kSap42));
    af_a = l.a.open_af(1, kCoemuAf)->id;
  }
  // alpha calls beta asking `t`; beta's client is offered the call.
  VcId call(const Traffic& t) {
    VcId vc = *l.a.create_vc(af_a);
    CmOutput out;
    EXPECT_EQ(l.a.make_call(vc, "beta", kSap42, l.now, out, t), Status::kPending);
    l.take(kMacA, out);
    l.pump(l.now + milliseconds(50));
    return vc;
  }
  void answer(const std::optional<Traffic>& granted = std::nullopt) {
    const ClientEvent* in = l.last(l.ev_b, Ev::kIncomingCall);
    ASSERT_TRUE(in);
    CmOutput out;
    ASSERT_EQ(l.b.incoming_call_complete(in->vc, Status::kSuccess, l.now, out, granted), Status::kSuccess);
    l.take(kMacB, out);
    l.pump(l.now + milliseconds(50));
  }
  Lab l;
  AfOpenId af_a, af_b;
};

// R44: the FLOWSPECs asked reach the callee as seen from its side, come back
// as granted, and the caller's VC is shaped to its transmit FLOWSPEC.
TEST(Qos, R44_FlowspecsReachTheCalleeFromItsSideAndShapeTheCallersVc) {
  Qos q;
  const Traffic asked{guaranteed(1'000'000), FlowSpec{}};
  const VcId vc = q.call(asked);
  ASSERT_TRUE(q.l.last(q.l.ev_b, Ev::kIncomingCall));
  const ClientEvent in_ev = *q.l.last(q.l.ev_b, Ev::kIncomingCall);  // a copy: answering adds events
  const ClientEvent* in = &in_ev;
  EXPECT_EQ(in->traffic.receive, asked.transmit) << "what alpha sends, beta receives";
  EXPECT_EQ(in->traffic.transmit, asked.receive);
  q.answer();
  const ClientEvent* made = q.l.last(q.l.ev_a, Ev::kMakeCallComplete);
  ASSERT_TRUE(made);
  EXPECT_EQ(made->status, Status::kSuccess);
  EXPECT_EQ(made->traffic, asked);
  EXPECT_FALSE(made->params_changed);
  EXPECT_EQ(shaped_at(q.l.vcs_a, vc), 1'000'000);
  const auto g = q.l.vcs_a.begin_tx(vc);
  ASSERT_EQ(g.status, Status::kSuccess);
  EXPECT_EQ(g.shape_bucket, 3000u) << "the FLOWSPEC's bucket";
  q.l.vcs_a.cancel_tx(vc);
  // Beta sends best effort: not shaped.
  EXPECT_EQ(shaped_at(q.l.vcs_b, in->vc), 0);
}

// R42: the callee may grant less; the caller sees the granted FLOWSPEC with
// CALL_PARAMETERS_CHANGED and its VC is shaped to it. More than offered is
// refused.
TEST(Qos, R42_TheCalleeLowersTheRateAndTheCallerSeesParametersChanged) {
  Qos q;
  const VcId vc = q.call(Traffic{guaranteed(2'000'000), FlowSpec{}});
  const ClientEvent* in = q.l.last(q.l.ev_b, Ev::kIncomingCall);
  ASSERT_TRUE(in);
  CmOutput out;
  Traffic more = in->traffic;
  more.receive.token_rate = 3'000'000;
  EXPECT_EQ(q.l.b.incoming_call_complete(in->vc, Status::kSuccess, q.l.now, out, more), Status::kInvalidData);
  Traffic less = in->traffic;
  less.receive.token_rate = 500'000;
  q.answer(less);
  const ClientEvent* made = q.l.last(q.l.ev_a, Ev::kMakeCallComplete);
  ASSERT_TRUE(made);
  EXPECT_EQ(made->status, Status::kSuccess);
  EXPECT_TRUE(made->params_changed);
  EXPECT_EQ(made->traffic.transmit.token_rate, 500'000u);
  EXPECT_EQ(shaped_at(q.l.vcs_a, vc), 500'000) << "shaped to what was granted";
}

// Admission per link and direction: guaranteed and controlled-load rates add
// up to the link speed; a call that does not fit is refused with cause 49 by
// the caller's CM or the callee's; best effort always fits; a closed call
// gives its share back.
TEST(Qos, AdmissionRefusesWhatDoesNotFitTheLinkWithCause49) {
  Qos q(link(10'000'000), link(5'000'000));
  const VcId first = q.call(Traffic{guaranteed(4'000'000), FlowSpec{}});
  q.answer();
  ASSERT_EQ(q.l.last(q.l.ev_a, Ev::kMakeCallComplete)->status, Status::kSuccess);

  // Beta's link (5 MB/s in) cannot also take 2 MB/s more: its CM refuses.
  q.call(Traffic{guaranteed(2'000'000), FlowSpec{}});
  const ClientEvent* refused = q.l.last(q.l.ev_a, Ev::kMakeCallComplete);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->cause, cause::kQosUnavailable);
  EXPECT_EQ(refused->status, Status::kIncompatableQos);

  // Alpha's own link (10 MB/s out) cannot take 7 MB/s more: refused at once,
  // nothing sent.
  const size_t frames = q.l.wire.size();
  VcId big = *q.l.a.create_vc(q.af_a);
  CmOutput out;
  ASSERT_EQ(q.l.a.make_call(big, "beta", kSap42, q.l.now, out, Traffic{guaranteed(7'000'000), FlowSpec{}}),
            Status::kPending);
  q.l.take(kMacA, out);
  EXPECT_EQ(q.l.wire.size(), frames);
  EXPECT_EQ(q.l.last(q.l.ev_a, Ev::kMakeCallComplete)->vc, big);
  EXPECT_EQ(q.l.last(q.l.ev_a, Ev::kMakeCallComplete)->cause, cause::kQosUnavailable);

  // Best effort fits whatever is held.
  q.call(Traffic{});
  q.answer();
  EXPECT_EQ(q.l.last(q.l.ev_a, Ev::kMakeCallComplete)->status, Status::kSuccess);

  // Closing the first call frees 4 MB/s once both ends' clients are done
  // with it (beta's holds it until its own close, R67): 2 MB/s fits then.
  q.l.close(q.l.a, first);
  const ClientEvent* gone = q.l.last(q.l.ev_b, Ev::kIncomingClose);
  ASSERT_TRUE(gone);
  q.l.close(q.l.b, gone->vc);
  q.call(Traffic{guaranteed(2'000'000), FlowSpec{}});
  q.answer();
  EXPECT_EQ(q.l.last(q.l.ev_a, Ev::kMakeCallComplete)->status, Status::kSuccess);
}

// R61/R62/R63: either end changes an active call's FLOWSPECs; the peer's
// VC takes them before its client hears (kIncomingQosChange), the
// requester's VC before kModifyQosComplete.
TEST(Qos, R61_R63_ModifyFromEitherSideReshapesBothVcsBeforeTheClientsHear) {
  Qos q;
  const VcId vc = q.call(Traffic{guaranteed(1'000'000), FlowSpec{}});
  q.answer();
  const VcId vc_b = q.l.last(q.l.ev_b, Ev::kIncomingCall)->vc;
  CmOutput out;
  ASSERT_EQ(q.l.a.modify_call_qos(vc, Traffic{guaranteed(2'000'000), FlowSpec{}}, q.l.now, out), Status::kPending);
  q.l.take(kMacA, out);
  EXPECT_EQ(q.l.a.modify_call_qos(vc, Traffic{}, q.l.now, out), Status::kClosing) << "one modify at a time";
  q.l.pump(q.l.now + milliseconds(50));
  ASSERT_TRUE(q.l.last(q.l.ev_b, Ev::kIncomingQosChange));
  EXPECT_EQ(q.l.last(q.l.ev_b, Ev::kIncomingQosChange)->traffic.receive.token_rate, 2'000'000u);
  const ClientEvent* done = q.l.last(q.l.ev_a, Ev::kModifyQosComplete);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, Status::kSuccess);
  EXPECT_FALSE(done->params_changed);
  EXPECT_EQ(shaped_at(q.l.vcs_a, vc), 2'000'000);

  // Beta now asks to send guaranteed 300 kB/s itself.
  ASSERT_EQ(q.l.b.modify_call_qos(vc_b, Traffic{guaranteed(300'000), guaranteed(2'000'000)}, q.l.now, out),
            Status::kPending);
  q.l.take(kMacB, out);
  q.l.pump(q.l.now + milliseconds(50));
  ASSERT_EQ(q.l.last(q.l.ev_b, Ev::kModifyQosComplete)->status, Status::kSuccess);
  EXPECT_EQ(q.l.last(q.l.ev_a, Ev::kIncomingQosChange)->traffic.receive.token_rate, 300'000u);
  EXPECT_EQ(shaped_at(q.l.vcs_b, vc_b), 300'000);
}

// R62: a change the peer's link cannot take is refused with cause 49 and
// the old FLOWSPECs stay in force on both VCs; one our own link cannot take
// is refused without a message.
TEST(Qos, R62_ARefusedModifyLeavesTheOldParametersInForce) {
  Qos q(link(10'000'000), link(3'000'000));
  const VcId vc = q.call(Traffic{guaranteed(1'000'000), FlowSpec{}});
  q.answer();
  CmOutput out;
  ASSERT_EQ(q.l.a.modify_call_qos(vc, Traffic{guaranteed(5'000'000), FlowSpec{}}, q.l.now, out), Status::kPending);
  q.l.take(kMacA, out);
  q.l.pump(q.l.now + milliseconds(50));
  const ClientEvent* done = q.l.last(q.l.ev_a, Ev::kModifyQosComplete);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->cause, cause::kQosUnavailable);
  EXPECT_EQ(done->status, Status::kIncompatableQos);
  EXPECT_EQ(done->traffic.transmit.token_rate, 1'000'000u) << "what stays in force";
  EXPECT_FALSE(q.l.last(q.l.ev_b, Ev::kIncomingQosChange));
  EXPECT_EQ(shaped_at(q.l.vcs_a, vc), 1'000'000);
  // Own link: 10 MB/s out cannot take 11.
  const size_t frames = q.l.wire.size();
  ASSERT_EQ(q.l.a.modify_call_qos(vc, Traffic{guaranteed(11'000'000), FlowSpec{}}, q.l.now, out), Status::kPending);
  q.l.take(kMacA, out);
  EXPECT_EQ(q.l.wire.size(), frames);
  EXPECT_EQ(q.l.last(q.l.ev_a, Ev::kModifyQosComplete)->cause, cause::kQosUnavailable);
  // Room held by a refused change is free again: a 2 MB/s change fits at beta.
  ASSERT_EQ(q.l.a.modify_call_qos(vc, Traffic{guaranteed(2'000'000), FlowSpec{}}, q.l.now, out), Status::kPending);
  q.l.take(kMacA, out);
  q.l.pump(q.l.now + milliseconds(50));
  EXPECT_EQ(q.l.last(q.l.ev_a, Ev::kModifyQosComplete)->status, Status::kSuccess);
}

// While a change waits for the peer, the call keeps the room of its old
// FLOWSPECs (still in force), even when it asks for best effort.
TEST(Qos, R62_APendingModifyKeepsItsOldRoom) {
  Qos q(link(2'000'000), link(10'000'000));
  const VcId vc = q.call(Traffic{guaranteed(1'500'000), FlowSpec{}});
  q.answer();
  CmOutput out;
  ASSERT_EQ(q.l.a.modify_call_qos(vc, Traffic{}, q.l.now, out), Status::kPending);
  q.l.take(kMacA, out);  // MODIFY_REQUEST sent, not yet answered
  VcId other = *q.l.a.create_vc(q.af_a);
  ASSERT_EQ(q.l.a.make_call(other, "beta", kSap42, q.l.now, out, Traffic{guaranteed(1'000'000), FlowSpec{}}),
            Status::kPending);
  q.l.take(kMacA, out);
  ASSERT_TRUE(q.l.last(q.l.ev_a, Ev::kMakeCallComplete));
  EXPECT_EQ(q.l.last(q.l.ev_a, Ev::kMakeCallComplete)->vc, other);
  EXPECT_EQ(q.l.last(q.l.ev_a, Ev::kMakeCallComplete)->cause, cause::kQosUnavailable) << "1.5 MB/s is still held";
  q.l.pump(q.l.now + milliseconds(50));
  EXPECT_EQ(q.l.last(q.l.ev_a, Ev::kModifyQosComplete)->status, Status::kSuccess);
  EXPECT_EQ(shaped_at(q.l.vcs_a, vc), 0) << "best effort now";
}

// R52: the callee may change what it will grant while its answer pends; the
// caller then sees it with CALL_PARAMETERS_CHANGED.
TEST(Qos, R52_CalleeModifiesWhileItsAnswerPends) {
  Qos q;
  const VcId vc = q.call(Traffic{guaranteed(2'000'000), FlowSpec{}});
  const ClientEvent in = *q.l.last(q.l.ev_b, Ev::kIncomingCall);
  Traffic mine = in.traffic;
  mine.receive.token_rate = 700'000;
  CmOutput out;
  ASSERT_EQ(q.l.b.modify_call_qos(in.vc, mine, q.l.now, out), Status::kPending);
  q.l.take(kMacB, out);
  ASSERT_TRUE(q.l.last(q.l.ev_b, Ev::kModifyQosComplete));
  EXPECT_EQ(q.l.last(q.l.ev_b, Ev::kModifyQosComplete)->status, Status::kSuccess);
  q.answer();
  const ClientEvent* made = q.l.last(q.l.ev_a, Ev::kMakeCallComplete);
  ASSERT_TRUE(made);
  EXPECT_EQ(made->status, Status::kSuccess);
  EXPECT_TRUE(made->params_changed);
  EXPECT_EQ(made->traffic.transmit.token_rate, 700'000u);
  EXPECT_EQ(shaped_at(q.l.vcs_a, vc), 700'000);
}

}  // namespace
}  // namespace cm
