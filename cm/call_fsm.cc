#include "cm/call_fsm.h"

namespace cm {

Status status_for_cause(uint8_t c) noexcept {
  switch (c) {
    case cause::kNormalClearing:
    case cause::kNormalUnspecified:
    case cause::kResponseToStatusEnquiry: return Status::kSuccess;
    case cause::kUnallocatedNumber: return Status::kInvalidAddress;
    case cause::kNoRoute: return Status::kNoRouteToDestination;
    case cause::kUserBusy:
    case cause::kNoUserResponding:
    case cause::kCallRejected:
    case cause::kIncompatibleDestination: return Status::kNotAccepted;
    case cause::kDestinationOutOfOrder:
    case cause::kTemporaryFailure: return Status::kDestOutOfOrder;
    case cause::kResourceUnavailable: return Status::kResources;
    case cause::kQosUnavailable: return Status::kIncompatableQos;
    default: return Status::kFailure;  // protocol errors and timer expiry
  }
}

UnknownCallRef on_unknown_call_ref(MsgType type, uint32_t wire_ref) noexcept {
  const bool from_originator = (wire_ref & kCallRefToOriginator) == 0;
  switch (type) {
    case MsgType::kSetup:
    case MsgType::kAddParty:
      // A new call only from its originator; one "to the originator" names
      // a call we should have made and did not.
      return from_originator ? UnknownCallRef::kNewCall : UnknownCallRef::kReleaseComplete81;
    case MsgType::kReleaseComplete:
    case MsgType::kStatus:
    case MsgType::kRestartAck:
      return UnknownCallRef::kIgnore;
    case MsgType::kRestart:
      return UnknownCallRef::kRestartAck;
    case MsgType::kCallProceeding:
    case MsgType::kConnect:
    case MsgType::kConnectAck:
    case MsgType::kRelease:
    case MsgType::kAddPartyAck:
    case MsgType::kAddPartyReject:
    case MsgType::kDropParty:
    case MsgType::kDropPartyAck:
    case MsgType::kModifyRequest:
    case MsgType::kModifyAck:
    case MsgType::kModifyReject:
    case MsgType::kStatusEnquiry:
      return UnknownCallRef::kReleaseComplete81;
  }
  return UnknownCallRef::kReleaseComplete81;
}

namespace {
constexpr CauseIe kAnswerToRelease{cause::kNormalClearing, 1};            // 4: RC answering RELEASE
constexpr CauseIe kTimerClear{cause::kRecoveryOnTimerExpiry, 2};          // 6: "clear"
constexpr CauseIe kOurRelease{cause::kNormalClearing, 0};                  // the client closed
constexpr CauseIe kWrongState{cause::kMessageNotCompatibleWithState, 1};  // 4.2 step 5
constexpr CauseIe kEnquiryAnswer{cause::kResponseToStatusEnquiry, 1};
}  // namespace

CallFsm CallFsm::outgoing(uint32_t call_ref, Time now, const CallTimers& t, CallActions& out) {
  CallFsm c(call_ref, true, t);
  c.send(MsgType::kSetup, out);
  c.start(t.t303, now);
  c.state_ = CallState::kCallInitiated;
  return c;
}

CallFsm CallFsm::incoming(uint32_t call_ref, uint32_t peer_vci, const CallTimers& t, CallActions& out) {
  CallFsm c(call_ref, false, t);
  c.state_ = CallState::kCallPresent;
  c.peer_vci_ = peer_vci;
  // R50: the VC is active before the call is dispatched; nothing reaches it
  // until the caller learns our label from CONNECT.
  CallAction a{CallAction::Kind::kActivateVc};
  a.peer_vci = peer_vci;
  out.push_back(a);
  c.vc_active_ = true;
  c.indicate(CallIndication::kIncomingCall, Status::kSuccess, 0, out);
  return c;
}

void CallFsm::send(MsgType m, CallActions& out, std::optional<CauseIe> cause, std::optional<uint8_t> state) {
  CallAction a{CallAction::Kind::kSend};
  a.msg = m;
  a.cause = cause;
  a.state = state;
  out.push_back(a);
}

void CallFsm::indicate(CallIndication i, Status s, uint8_t cause, CallActions& out) {
  CallAction a{CallAction::Kind::kIndicate};
  a.indication = i;
  a.status = s;
  a.cause = CauseIe{cause, 0};
  out.push_back(a);
}

void CallFsm::free(CallActions& out) {
  state_ = CallState::kNull;
  timer_ = kNever;
  enquiry_ = kNever;
  out.push_back(CallAction{CallAction::Kind::kFree});
}

void CallFsm::deactivate(CallActions& out) {
  if (!vc_active_) return;
  vc_active_ = false;
  out.push_back(CallAction{CallAction::Kind::kDeactivateVc});
}

void CallFsm::clear(uint8_t client_cause, std::optional<CauseIe> answer, CallActions& out) {
  timer_ = kNever;
  enquiry_ = kNever;
  if (answer) send(MsgType::kReleaseComplete, out, answer);
  deactivate(out);
  switch (state_) {
    case CallState::kCallInitiated:
    case CallState::kOutgoingProceeding:
      // The make-call was still pending: it fails with the cause (R40/R41).
      indicate(CallIndication::kMakeCallComplete, status_for_cause(client_cause) == Status::kSuccess
                                                      ? Status::kFailure
                                                      : status_for_cause(client_cause),
               client_cause, out);
      free(out);
      return;
    case CallState::kCallPresent:
    case CallState::kIncomingProceeding:
    case CallState::kConnectRequest:
    case CallState::kActive:
      // R55/R67: the client is told and answers with its own close.
      indicate(CallIndication::kIncomingClose, status_for_cause(client_cause), client_cause, out);
      state_ = CallState::kReleaseIndication;
      return;
    case CallState::kReleaseRequest:
      indicate(CallIndication::kCloseComplete, Status::kSuccess, client_cause, out);
      free(out);
      return;
    case CallState::kReleaseIndication:
    case CallState::kNull:
      return;
  }
}

bool CallFsm::accept(Time now, CallActions& out) {
  if (state_ != CallState::kCallPresent && state_ != CallState::kIncomingProceeding) return false;
  // The VC has been active since the SETUP (R50), so the callee receives on
  // its label from the moment CONNECT leaves (4).
  send(MsgType::kConnect, out);
  start(t_->t313, now);
  state_ = CallState::kConnectRequest;
  return true;
}

bool CallFsm::defer(Time, CallActions& out) {
  if (state_ != CallState::kCallPresent) return false;
  send(MsgType::kCallProceeding, out);
  state_ = CallState::kIncomingProceeding;
  return true;
}

bool CallFsm::reject(uint8_t c, CallActions& out) {
  if (state_ != CallState::kCallPresent && state_ != CallState::kIncomingProceeding) return false;
  send(MsgType::kReleaseComplete, out, CauseIe{c, 0});
  deactivate(out);  // R54
  free(out);
  return true;
}

bool CallFsm::close(Time now, CallActions& out) {
  switch (state_) {
    case CallState::kNull:
    case CallState::kReleaseRequest:
      return false;  // nothing to close, or a close under way (R90)
    case CallState::kReleaseIndication:
      // The expected answer to an incoming close: the call is already
      // released on the wire.
      indicate(CallIndication::kCloseComplete, Status::kSuccess, cause::kNormalClearing, out);
      free(out);
      return true;
    case CallState::kCallInitiated:
    case CallState::kOutgoingProceeding:
      // EMU (R90): closing while the make-call is pending fails the
      // make-call; the close completes when the peer answers.
      indicate(CallIndication::kMakeCallComplete, Status::kRequestAborted, cause::kNormalClearing, out);
      break;
    case CallState::kCallPresent:
    case CallState::kIncomingProceeding:
    case CallState::kConnectRequest:
    case CallState::kActive:
      break;
  }
  send(MsgType::kRelease, out, kOurRelease);
  deactivate(out);
  enquiry_ = kNever;
  start(t_->t308, now);
  state_ = CallState::kReleaseRequest;
  return true;
}

void CallFsm::peer_lost(CallActions& out, uint8_t c) {
  if (state_ == CallState::kNull) return;
  clear(c, std::nullopt, out);
}

void CallFsm::enquire(Time now, CallActions& out) {
  send(MsgType::kStatusEnquiry, out);
  enquiry_ = now + t_->t322;
  rearmed_ = true;
}

void CallFsm::on_message(const Message& m, Time now, CallActions& out) {
  const uint8_t peer_cause = m.cause ? m.cause->cause : cause::kNormalUnspecified;
  switch (m.type) {
    case MsgType::kStatusEnquiry:
      send(MsgType::kStatus, out, kEnquiryAnswer, static_cast<uint8_t>(state_));
      return;
    case MsgType::kStatus:
      enquiry_ = kNever;
      // The peer has no such call: it is gone there, so clear it here.
      if (m.call_state && *m.call_state == 0 && state_ != CallState::kNull)
        clear(cause::kTemporaryFailure, std::nullopt, out);
      return;
    case MsgType::kRelease:
      if (state_ == CallState::kReleaseIndication) {
        send(MsgType::kReleaseComplete, out, kAnswerToRelease);  // a repeat: answer again
        return;
      }
      // Crossing releases (U11) end here too: each side answers and frees.
      clear(peer_cause, kAnswerToRelease, out);
      return;
    case MsgType::kReleaseComplete:
      if (state_ == CallState::kReleaseIndication) return;
      clear(peer_cause, std::nullopt, out);
      return;
    case MsgType::kCallProceeding:
      if (state_ != CallState::kCallInitiated) break;
      start(t_->t310, now);
      state_ = CallState::kOutgoingProceeding;
      return;
    case MsgType::kConnect: {
      if (state_ != CallState::kCallInitiated && state_ != CallState::kOutgoingProceeding) break;
      timer_ = kNever;
      // Active before anyone is told the call is up: the first data frame
      // is never lost (4).
      CallAction a{CallAction::Kind::kActivateVc};
      a.peer_vci = m.vci.value_or(0);
      out.push_back(a);
      vc_active_ = true;
      send(MsgType::kConnectAck, out);
      state_ = CallState::kActive;
      indicate(CallIndication::kMakeCallComplete, Status::kSuccess, 0, out);
      return;
    }
    case MsgType::kConnectAck:
      if (state_ != CallState::kConnectRequest) break;
      timer_ = kNever;
      state_ = CallState::kActive;
      indicate(CallIndication::kCallConnected, Status::kSuccess, 0, out);
      return;
    case MsgType::kSetup:
    case MsgType::kAddParty:
    case MsgType::kAddPartyAck:
    case MsgType::kAddPartyReject:
    case MsgType::kDropParty:
    case MsgType::kDropPartyAck:
    case MsgType::kModifyRequest:
    case MsgType::kModifyAck:
    case MsgType::kModifyReject:
    case MsgType::kRestart:
    case MsgType::kRestartAck:
      break;
  }
  // 4.2 step 5: wrong for this state; the message is ignored.
  send(MsgType::kStatus, out, kWrongState, static_cast<uint8_t>(state_));
}

void CallFsm::on_timer(Time now, CallActions& out) {
  if (enquiry_ <= now) {
    enquiry_ = kNever;
    clear(cause::kRecoveryOnTimerExpiry, kTimerClear, out);  // T322
    return;
  }
  if (timer_ > now) return;
  timer_ = kNever;
  switch (state_) {
    case CallState::kCallInitiated:       // T303
    case CallState::kOutgoingProceeding:  // T310
    case CallState::kConnectRequest:      // T313
      clear(cause::kRecoveryOnTimerExpiry, kTimerClear, out);
      return;
    case CallState::kReleaseRequest:  // T308: free without an answer
      indicate(CallIndication::kCloseComplete, Status::kSuccess, cause::kRecoveryOnTimerExpiry, out);
      free(out);
      return;
    case CallState::kNull:
    case CallState::kCallPresent:
    case CallState::kIncomingProceeding:
    case CallState::kActive:
    case CallState::kReleaseIndication:
      return;
  }
}

std::optional<Time> CallFsm::next_deadline() const {
  const Time t = std::min(timer_, enquiry_);
  return t == kNever ? std::nullopt : std::optional(t);
}

}  // namespace cm
