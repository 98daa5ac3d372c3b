// CallFsm: one point-to-point call's signaling state machine (PROTOCOL.md
// sections 4 and 6, Q.2931 state numbering), as a value: client requests,
// messages and the time go in; messages to send, VC activations, client
// indications and timers come out. It never sends, sleeps or reads a clock.
//
//   CallActions out;
//   CallFsm c = CallFsm::outgoing(ref, now, timers, out);   // SETUP, T303
//   c.on_message(decoded.msg, now, out);                     // CONNECT -> activate, CONNECT_ACK, complete
//   c.close(now, out);                                       // RELEASE, T308
//   if (auto d = c.next_deadline(); d && *d <= now) c.on_timer(now, out);
//
// The call manager around it fills the IEs (VCIs, SAP, traffic), runs the
// VC actions on the miniport and delivers the indications; it frees the call
// when an action says kFree.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "cm/sig_codec.h"
#include "miniport/time.h"

namespace cm {

using miniport::Duration;
using miniport::Time;

// Q.2931 call states (the CALL_STATE IE carries these numbers).
enum class CallState : uint8_t {
  kNull = 0,
  kCallInitiated = 1,       // caller: SETUP sent
  kOutgoingProceeding = 3,  // caller: CALL_PROCEEDING received
  kCallPresent = 6,         // callee: SETUP dispatched to the client
  kConnectRequest = 8,      // callee: CONNECT sent
  kIncomingProceeding = 9,  // callee: the client's answer is pending, CALL_PROCEEDING sent
  kActive = 10,
  kReleaseRequest = 11,     // RELEASE sent
  kReleaseIndication = 12,  // RELEASE received, the client has not closed yet
};

struct CallTimers {  // PROTOCOL.md section 6 defaults
  Duration t303 = std::chrono::seconds(4);
  Duration t310 = std::chrono::seconds(10);
  Duration t313 = std::chrono::seconds(4);
  Duration t308 = std::chrono::seconds(4);
  Duration t322 = std::chrono::seconds(4);
};

// What the client is told (the ProtocolCl* callbacks).
enum class CallIndication : uint8_t {
  kMakeCallComplete,  // status + cause: SUCCESS once the VC is active
  kIncomingCall,      // the SETUP, for the SAP owner to accept or reject
  kCallConnected,     // callee: data may flow both ways now (R53)
  kIncomingClose,     // the peer or the network closed the call (R67)
  kCloseComplete,     // our close finished (R65)
};

struct CallAction {
  enum class Kind : uint8_t {
    kSend,          // send `msg` (the CM adds the IEs it owns); `cause`/`state` for the CAUSE/CALL_STATE IEs
    kActivateVc,    // activate the call's VC, sending to the peer's label `peer_vci`
    kDeactivateVc,  // deactivate the call's VC (no data from now on)
    kIndicate,      // tell the client `indication` with `status` and `cause`
    kFree,          // the call is over: free its call reference
  };
  Kind kind = Kind::kFree;
  MsgType msg = MsgType::kStatus;
  std::optional<CauseIe> cause = {};
  std::optional<uint8_t> state = {};
  uint32_t peer_vci = 0;
  CallIndication indication = CallIndication::kCloseComplete;
  Status status = Status::kSuccess;
};
using CallActions = std::vector<CallAction>;

// The NDIS status a client sees for a call refused or cleared with a cause.
[[nodiscard]] Status status_for_cause(uint8_t cause) noexcept;

// Call references (section 4): bit 31 is 0 in messages from the call's
// originator and 1 in messages to it, so both ends share one number space.
inline constexpr uint32_t kCallRefToOriginator = 0x80000000u;
// The reference to put in a message about our call `ref` (ref < 2^31).
[[nodiscard]] constexpr uint32_t wire_call_ref(uint32_t ref, bool we_originated) noexcept {
  return we_originated ? ref : (ref | kCallRefToOriginator);
}

// What to do with a message whose call reference matches no call
// (section 4.2 step 3).
enum class UnknownCallRef : uint8_t {
  kNewCall,                 // SETUP or ADD_PARTY from the originator: a new call or party
  kReleaseComplete81,       // answer RELEASE_COMPLETE with cause 81
  kRestartAck,              // answer RESTART with RESTART_ACK
  kIgnore,                  // RELEASE_COMPLETE, STATUS, RESTART_ACK: nothing is sent
};
[[nodiscard]] UnknownCallRef on_unknown_call_ref(MsgType type, uint32_t wire_ref) noexcept;

class CallFsm {
 public:
  // Caller: SETUP goes out (the CM adds CALLED_PARTY, SAP, VCI...), T303 runs.
  static CallFsm outgoing(uint32_t call_ref, Time now, const CallTimers& t, CallActions& out);
  // Callee: a valid SETUP matched a SAP; the client is offered the call.
  // `peer_vci` is the caller's label from the SETUP's VCI IE.
  static CallFsm incoming(uint32_t call_ref, uint32_t peer_vci, const CallTimers& t, CallActions& out);

  // Callee's client answers (R51/R52). accept: the VC is activated, then
  // CONNECT goes out and T313 runs. defer: CALL_PROCEEDING, answer later.
  // reject: RELEASE_COMPLETE with the cause, and the call is freed.
  // Each returns false (and does nothing) in a state where it makes no sense.
  bool accept(Time now, CallActions& out);
  bool defer(Time now, CallActions& out);
  bool reject(uint8_t cause, CallActions& out);

  // Client close_call (R64), either side, any state. False when a close is
  // already under way (the API answers FAILURE/CLOSING).
  bool close(Time now, CallActions& out);
  // Asks the peer for its state of the call (STATUS_ENQUIRY, T322).
  void enquire(Time now, CallActions& out);
  // The peer went down, restarted or reset the association (3.1, 3.2), or
  // our link went down: the call is cleared locally with `cause` (41, or 27
  // for the link) and nothing is sent.
  void peer_lost(CallActions& out, uint8_t cause = cause::kTemporaryFailure);

  // A decoded, checked message for this call (4.2 steps 1-4 done by the CM).
  void on_message(const Message& m, Time now, CallActions& out);
  void on_timer(Time now, CallActions& out);
  [[nodiscard]] std::optional<Time> next_deadline() const;

  [[nodiscard]] CallState state() const noexcept { return state_; }
  // When the state's timer (T303, T310, T313, T308, or T399/T398 for a
  // party) and T322 run out, if they run (for `coemu show calls`).
  [[nodiscard]] std::optional<Time> state_timer() const noexcept { return armed(timer_); }
  [[nodiscard]] std::optional<Time> enquiry_timer() const noexcept { return armed(enquiry_); }
  // Whether a timer was started since the last call (the call manager's
  // timer queue then takes its deadlines); clears the flag.
  [[nodiscard]] bool take_rearmed() noexcept { return std::exchange(rearmed_, false); }
  // Whether one of its timers runs out at exactly `t` (a queued deadline
  // that no longer matches is stale).
  [[nodiscard]] bool due_at(Time t) const noexcept { return t != kNever && (timer_ == t || enquiry_ == t); }
  [[nodiscard]] uint32_t call_ref() const noexcept { return ref_; }
  [[nodiscard]] bool outgoing() const noexcept { return outgoing_; }

 private:
  // `t` is kept by address: it must outlive the machine (the call
  // manager's configuration does).
  CallFsm(uint32_t ref, bool outgoing, const CallTimers& t) : ref_(ref), outgoing_(outgoing), t_(&t) {}
  static constexpr Time kNever = Time::max();
  static std::optional<Time> armed(Time t) { return t == kNever ? std::nullopt : std::optional(t); }
  void send(MsgType m, CallActions& out, std::optional<CauseIe> cause = std::nullopt,
            std::optional<uint8_t> state = std::nullopt);
  void indicate(CallIndication i, Status s, uint8_t cause, CallActions& out);
  void free(CallActions& out);
  void deactivate(CallActions& out);
  void start(Duration d, Time now) {
    timer_ = now + d;
    rearmed_ = true;
  }
  // The call ends with `client_cause`: the client learns it as a failed
  // make-call, an incoming close, or (after its own close) a completion;
  // `answer` is the RELEASE_COMPLETE to send first, if any.
  void clear(uint8_t client_cause, std::optional<CauseIe> answer, CallActions& out);

  // Laid out small: a node holds a million of these.
  uint32_t ref_;
  uint32_t peer_vci_ = 0;  // callee: the caller's label from SETUP
  bool outgoing_;
  CallState state_ = CallState::kNull;
  bool vc_active_ = false;
  bool rearmed_ = false;
  const CallTimers* t_;
  Time timer_ = kNever;    // the state's timer (T303/T310/T313/T308)
  Time enquiry_ = kNever;  // T322
};

}  // namespace cm
