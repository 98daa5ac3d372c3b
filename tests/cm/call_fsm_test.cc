#include "cm/call_fsm.h"

#include <gtest/gtest.h>

namespace cm {
namespace {

using Kind = CallAction::Kind;
using std::chrono::milliseconds;
using std::chrono::seconds;

const CallTimers kT{};

// The message a peer receives for a kSend action (the CM would add its IEs).
Message wire(const CallAction& a, uint32_t ref, uint32_t vci = 0) {
  Message m;
  m.type = a.msg;
  m.call_ref = ref;
  m.cause = a.cause;
  m.call_state = a.state;
  if (vci) m.vci = vci;
  return m;
}

const CallAction* find(const CallActions& out, Kind k) {
  for (const auto& a : out)
    if (a.kind == k) return &a;
  return nullptr;
}

std::vector<Kind> kinds(const CallActions& out) {
  std::vector<Kind> k;
  for (const auto& a : out) k.push_back(a.kind);
  return k;
}

// Sets up caller and callee up to Active, checking the exact order.
struct Pair {
  CallActions co, ce;
  CallFsm caller = CallFsm::outgoing(7, Time(0), kT, co);
  CallFsm callee = CallFsm::incoming(7, /*caller's label*/ 100, kT, ce);

  void connect() {
    ASSERT_EQ(kinds(co), std::vector<Kind>{Kind::kSend});
    EXPECT_EQ(co[0].msg, MsgType::kSetup);
    // R50: the callee's VC is active before the client is offered the call.
    ASSERT_EQ(kinds(ce), (std::vector<Kind>{Kind::kActivateVc, Kind::kIndicate}));
    EXPECT_EQ(ce[0].peer_vci, 100u);
    EXPECT_EQ(ce[1].indication, CallIndication::kIncomingCall);
    co.clear();
    ce.clear();
    ASSERT_TRUE(callee.accept(Time(milliseconds(1)), ce));
    ASSERT_EQ(kinds(ce), std::vector<Kind>{Kind::kSend});
    EXPECT_EQ(ce[0].msg, MsgType::kConnect);
    EXPECT_EQ(callee.state(), CallState::kConnectRequest);
    caller.on_message(wire(ce[0], 7, /*callee's label*/ 200), Time(milliseconds(2)), co);
    // Caller: activate, CONNECT_ACK, then tell the client - in that order.
    ASSERT_EQ(kinds(co), (std::vector<Kind>{Kind::kActivateVc, Kind::kSend, Kind::kIndicate}));
    EXPECT_EQ(co[0].peer_vci, 200u);
    EXPECT_EQ(co[1].msg, MsgType::kConnectAck);
    EXPECT_EQ(co[2].indication, CallIndication::kMakeCallComplete);
    EXPECT_EQ(co[2].status, Status::kSuccess);
    callee.on_message(wire(co[1], 7), Time(milliseconds(3)), ce);
    ASSERT_EQ(ce.back().indication, CallIndication::kCallConnected);
    co.clear();
    ce.clear();
    EXPECT_EQ(caller.state(), CallState::kActive);
    EXPECT_EQ(callee.state(), CallState::kActive);
  }
};

TEST(CallFsm, R39R53SetupConnectConnectAckActivatesBeforeTellingAnyone) {
  Pair p;
  p.connect();
  EXPECT_FALSE(p.caller.next_deadline()) << "no timer runs on an active call";
}

TEST(CallFsm, R52DeferredAnswerSendsCallProceedingAndT310Bounds) {
  Pair p;
  ASSERT_TRUE(p.callee.defer(Time(0), p.ce));
  ASSERT_EQ(p.ce.back().msg, MsgType::kCallProceeding);
  EXPECT_EQ(p.callee.state(), CallState::kIncomingProceeding);
  p.co.clear();
  p.caller.on_message(wire(p.ce.back(), 7), Time(milliseconds(5)), p.co);
  EXPECT_EQ(p.caller.state(), CallState::kOutgoingProceeding);
  EXPECT_EQ(p.caller.next_deadline(), Time(milliseconds(5)) + seconds(10));
  p.caller.on_timer(Time(milliseconds(5)) + seconds(10), p.co);
  ASSERT_EQ(kinds(p.co), (std::vector<Kind>{Kind::kSend, Kind::kIndicate, Kind::kFree}));
  EXPECT_EQ(p.co[0].msg, MsgType::kReleaseComplete);
  EXPECT_EQ(p.co[0].cause->cause, cause::kRecoveryOnTimerExpiry);
  EXPECT_EQ(p.co[0].cause->location, 2);
  EXPECT_EQ(p.co[1].indication, CallIndication::kMakeCallComplete);
  EXPECT_EQ(p.co[1].status, Status::kFailure);
  EXPECT_EQ(p.co[1].cause->cause, cause::kRecoveryOnTimerExpiry);
}

TEST(CallFsm, T303ClearsAnUnansweredSetup) {
  CallActions out;
  CallFsm c = CallFsm::outgoing(1, Time(0), kT, out);
  out.clear();
  c.on_timer(Time(seconds(4)) - Time(1), out);
  EXPECT_TRUE(out.empty());
  c.on_timer(Time(seconds(4)), out);
  ASSERT_NE(find(out, Kind::kFree), nullptr);
  EXPECT_EQ(out[0].msg, MsgType::kReleaseComplete);
  EXPECT_EQ(c.state(), CallState::kNull);
}

TEST(CallFsm, T313ClearsAConnectNeverAcknowledged) {
  Pair p;
  p.co.clear();
  p.ce.clear();
  ASSERT_TRUE(p.callee.accept(Time(0), p.ce));
  p.ce.clear();
  p.callee.on_timer(Time(seconds(4)), p.ce);
  ASSERT_EQ(kinds(p.ce), (std::vector<Kind>{Kind::kSend, Kind::kDeactivateVc, Kind::kIndicate}));
  EXPECT_EQ(p.ce[2].indication, CallIndication::kIncomingClose);
  EXPECT_EQ(p.callee.state(), CallState::kReleaseIndication);
  p.ce.clear();
  ASSERT_TRUE(p.callee.close(Time(seconds(5)), p.ce));
  ASSERT_EQ(kinds(p.ce), (std::vector<Kind>{Kind::kIndicate, Kind::kFree}));
  EXPECT_EQ(p.ce[0].indication, CallIndication::kCloseComplete);
}

TEST(CallFsm, R64R67CloseFromOneSideAndTheIncomingCloseOnTheOther) {
  Pair p;
  p.connect();
  ASSERT_TRUE(p.caller.close(Time(seconds(1)), p.co));
  ASSERT_EQ(kinds(p.co), (std::vector<Kind>{Kind::kSend, Kind::kDeactivateVc}));
  EXPECT_EQ(p.co[0].msg, MsgType::kRelease);
  EXPECT_EQ(p.caller.state(), CallState::kReleaseRequest);
  p.callee.on_message(wire(p.co[0], 7), Time(seconds(1)), p.ce);
  ASSERT_EQ(kinds(p.ce), (std::vector<Kind>{Kind::kSend, Kind::kDeactivateVc, Kind::kIndicate}));
  EXPECT_EQ(p.ce[0].msg, MsgType::kReleaseComplete);
  EXPECT_EQ(p.ce[0].cause->cause, cause::kNormalClearing);
  EXPECT_EQ(p.ce[0].cause->location, 1);
  EXPECT_EQ(p.ce[2].indication, CallIndication::kIncomingClose);
  EXPECT_EQ(p.ce[2].status, Status::kSuccess) << "the remote closed normally";
  const CallAction rc = p.ce[0];
  p.ce.clear();
  ASSERT_TRUE(p.callee.close(Time(seconds(1)), p.ce));
  EXPECT_EQ(p.ce[0].indication, CallIndication::kCloseComplete);
  p.co.clear();
  p.caller.on_message(wire(rc, 7), Time(seconds(1)), p.co);
  ASSERT_EQ(kinds(p.co), (std::vector<Kind>{Kind::kIndicate, Kind::kFree}));
  EXPECT_EQ(p.co[0].indication, CallIndication::kCloseComplete);
}

TEST(CallFsm, T308FreesACloseNobodyAnswers) {
  Pair p;
  p.connect();
  ASSERT_TRUE(p.caller.close(Time(0), p.co));
  p.co.clear();
  p.caller.on_timer(Time(seconds(4)), p.co);
  ASSERT_EQ(kinds(p.co), (std::vector<Kind>{Kind::kIndicate, Kind::kFree}));
  EXPECT_EQ(p.co[0].indication, CallIndication::kCloseComplete);
}

TEST(CallFsm, R90CrossingClosesFinishWithOneCompletionEachAndNoIncomingClose) {
  Pair p;
  p.connect();
  ASSERT_TRUE(p.caller.close(Time(0), p.co));
  ASSERT_TRUE(p.callee.close(Time(0), p.ce));
  const CallAction rel_a = p.co[0], rel_b = p.ce[0];
  p.co.clear();
  p.ce.clear();
  p.caller.on_message(wire(rel_b, 7), Time(1), p.co);
  p.callee.on_message(wire(rel_a, 7), Time(1), p.ce);
  for (const CallActions* out : {&p.co, &p.ce}) {
    int completions = 0, incoming = 0;
    for (const auto& a : *out) {
      if (a.kind != Kind::kIndicate) continue;
      completions += a.indication == CallIndication::kCloseComplete;
      incoming += a.indication == CallIndication::kIncomingClose;
    }
    EXPECT_EQ(completions, 1);
    EXPECT_EQ(incoming, 0) << "suppressed once the client closed";
    EXPECT_NE(find(*out, Kind::kFree), nullptr);
  }
  EXPECT_FALSE(p.caller.close(Time(2), p.co)) << "nothing left to close";
}

TEST(CallFsm, R51R54RejectIsReleaseCompleteWithTheClientsCauseAndDeactivates) {
  Pair p;
  p.co.clear();
  p.ce.clear();
  ASSERT_TRUE(p.callee.reject(cause::kCallRejected, p.ce));
  ASSERT_EQ(kinds(p.ce), (std::vector<Kind>{Kind::kSend, Kind::kDeactivateVc, Kind::kFree}));
  EXPECT_EQ(p.ce[0].cause->cause, cause::kCallRejected);
  p.caller.on_message(wire(p.ce[0], 7), Time(1), p.co);
  ASSERT_EQ(p.co[0].indication, CallIndication::kMakeCallComplete);
  EXPECT_EQ(p.co[0].status, Status::kNotAccepted);
  EXPECT_EQ(p.co[0].cause->cause, cause::kCallRejected);
  EXPECT_EQ(p.caller.state(), CallState::kNull);
}

TEST(CallFsm, MessageWrongForTheStateGetsStatus101AndChangesNothing) {
  CallActions out;
  CallFsm c = CallFsm::outgoing(1, Time(0), kT, out);
  out.clear();
  Message ack;
  ack.type = MsgType::kConnectAck;
  c.on_message(ack, Time(1), out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].msg, MsgType::kStatus);
  EXPECT_EQ(out[0].cause->cause, cause::kMessageNotCompatibleWithState);
  EXPECT_EQ(*out[0].state, 1);
  EXPECT_EQ(c.state(), CallState::kCallInitiated);
}

TEST(CallFsm, StatusEnquiryIsAnsweredAndT322ClearsWhenUnanswered) {
  Pair p;
  p.connect();
  Message enq;
  enq.type = MsgType::kStatusEnquiry;
  p.callee.on_message(enq, Time(0), p.ce);
  ASSERT_EQ(p.ce.size(), 1u);
  EXPECT_EQ(p.ce[0].msg, MsgType::kStatus);
  EXPECT_EQ(p.ce[0].cause->cause, cause::kResponseToStatusEnquiry);
  EXPECT_EQ(*p.ce[0].state, 10);
  p.caller.enquire(Time(0), p.co);
  EXPECT_EQ(p.caller.next_deadline(), Time(seconds(4)));
  p.co.clear();
  p.caller.on_timer(Time(seconds(4)), p.co);
  ASSERT_NE(find(p.co, Kind::kIndicate), nullptr);
  EXPECT_EQ(find(p.co, Kind::kIndicate)->indication, CallIndication::kIncomingClose);
  EXPECT_EQ(p.co[0].msg, MsgType::kReleaseComplete);
}

TEST(CallFsm, StatusSayingThePeerHasNoCallClearsIt) {
  Pair p;
  p.connect();
  Message st;
  st.type = MsgType::kStatus;
  st.call_state = 0;
  p.caller.on_message(st, Time(0), p.co);
  ASSERT_NE(find(p.co, Kind::kIndicate), nullptr);
  EXPECT_EQ(find(p.co, Kind::kIndicate)->indication, CallIndication::kIncomingClose);
  EXPECT_EQ(find(p.co, Kind::kIndicate)->cause->cause, cause::kTemporaryFailure);
  EXPECT_EQ(find(p.co, Kind::kSend), nullptr) << "never answer a STATUS with a message";
}

TEST(CallFsm, R90CloseWhileMakeCallPendsFailsTheMakeCallThenCompletes) {
  CallActions out;
  CallFsm c = CallFsm::outgoing(1, Time(0), kT, out);
  out.clear();
  ASSERT_TRUE(c.close(Time(1), out));
  ASSERT_EQ(out[0].indication, CallIndication::kMakeCallComplete);
  EXPECT_EQ(out[0].status, Status::kRequestAborted);
  EXPECT_EQ(out[1].msg, MsgType::kRelease);
  EXPECT_FALSE(c.close(Time(2), out)) << "second close";
}

TEST(CallFsm, PeerLostClearsEveryStateWithCause41AndSendsNothing) {
  Pair p;
  p.connect();
  p.caller.peer_lost(p.co);
  EXPECT_EQ(find(p.co, Kind::kSend), nullptr);
  ASSERT_NE(find(p.co, Kind::kIndicate), nullptr);
  EXPECT_EQ(find(p.co, Kind::kIndicate)->cause->cause, cause::kTemporaryFailure);
  EXPECT_NE(find(p.co, Kind::kDeactivateVc), nullptr);
  CallActions out;
  CallFsm pending = CallFsm::outgoing(2, Time(0), kT, out);
  out.clear();
  pending.peer_lost(out);
  ASSERT_NE(find(out, Kind::kIndicate), nullptr);
  EXPECT_EQ(find(out, Kind::kIndicate)->indication, CallIndication::kMakeCallComplete);
  EXPECT_EQ(find(out, Kind::kIndicate)->status, Status::kDestOutOfOrder);
  EXPECT_NE(find(out, Kind::kFree), nullptr);
}

TEST(CallFsm, Step3UnknownCallReferences) {
  EXPECT_EQ(on_unknown_call_ref(MsgType::kSetup, 5), UnknownCallRef::kNewCall);
  EXPECT_EQ(on_unknown_call_ref(MsgType::kSetup, wire_call_ref(5, false)), UnknownCallRef::kReleaseComplete81);
  EXPECT_EQ(on_unknown_call_ref(MsgType::kAddParty, 5), UnknownCallRef::kNewCall);
  EXPECT_EQ(on_unknown_call_ref(MsgType::kReleaseComplete, 5), UnknownCallRef::kIgnore);
  EXPECT_EQ(on_unknown_call_ref(MsgType::kStatus, 5), UnknownCallRef::kIgnore);
  EXPECT_EQ(on_unknown_call_ref(MsgType::kRestartAck, 0), UnknownCallRef::kIgnore);
  EXPECT_EQ(on_unknown_call_ref(MsgType::kRestart, 9), UnknownCallRef::kRestartAck);
  EXPECT_EQ(on_unknown_call_ref(MsgType::kConnect, 0x80000005), UnknownCallRef::kReleaseComplete81);
  EXPECT_EQ(on_unknown_call_ref(MsgType::kRelease, 5), UnknownCallRef::kReleaseComplete81);
  EXPECT_EQ(wire_call_ref(5, true), 5u);
  EXPECT_EQ(wire_call_ref(5, false), 0x80000005u);
}

TEST(CallFsm, CausesMapToTheStatusesClientsSee) {
  EXPECT_EQ(status_for_cause(cause::kIncompatibleDestination), Status::kNotAccepted);
  EXPECT_EQ(status_for_cause(cause::kUnallocatedNumber), Status::kInvalidAddress);
  EXPECT_EQ(status_for_cause(cause::kTemporaryFailure), Status::kDestOutOfOrder);
  EXPECT_EQ(status_for_cause(cause::kNormalClearing), Status::kSuccess);
  EXPECT_EQ(status_for_cause(cause::kRecoveryOnTimerExpiry), Status::kFailure);
}

}  // namespace
}  // namespace cm
