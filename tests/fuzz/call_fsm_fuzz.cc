// libFuzzer target for the call state machine (PROTOCOL.md sections 4 and 6):
// one call, outgoing or incoming, fed an arbitrary sequence of client
// requests, peer messages, peer losses and clock jumps. Checked after every
// step: the VC is activated and deactivated alternately and never left
// active when the call is freed; a client hears at most one make-call
// completion, one incoming close and one close completion, the last only
// after it closed; clearing messages carry a cause; a request refused has
// no effect. At the end the client closes and the timers run: the call must
// be freed within a few expiries (no call outlives its timers).
#include <cstdint>
#include <cstdlib>

#include "cm/call_fsm.h"
#include "tests/fuzz/fuzz_input.h"

using namespace cm;

namespace {

constexpr MsgType kTypes[] = {
    MsgType::kSetup,        MsgType::kCallProceeding, MsgType::kConnect,       MsgType::kConnectAck,
    MsgType::kRelease,      MsgType::kReleaseComplete, MsgType::kAddParty,     MsgType::kAddPartyAck,
    MsgType::kAddPartyReject, MsgType::kDropParty,    MsgType::kDropPartyAck,  MsgType::kModifyRequest,
    MsgType::kModifyAck,    MsgType::kModifyReject,   MsgType::kStatusEnquiry, MsgType::kStatus,
    MsgType::kRestart,      MsgType::kRestartAck,
};

struct Client {
  bool outgoing = false;
  bool vc_active = false;
  bool freed = false;
  bool closed = false;  // the client called close()
  int make_call_completes = 0, incoming_closes = 0, close_completes = 0;

  void check(const CallFsm& c, const CallActions& out) {
    for (size_t i = 0; i < out.size(); ++i) {
      const CallAction& a = out[i];
      if (freed) std::abort();  // nothing after kFree
      switch (a.kind) {
        case CallAction::Kind::kSend:
          if ((a.msg == MsgType::kRelease || a.msg == MsgType::kReleaseComplete) && !a.cause) std::abort();
          if (a.msg == MsgType::kStatus && (!a.cause || !a.state)) std::abort();
          break;
        case CallAction::Kind::kActivateVc:
          if (vc_active) std::abort();
          vc_active = true;
          break;
        case CallAction::Kind::kDeactivateVc:
          if (!vc_active) std::abort();
          vc_active = false;
          break;
        case CallAction::Kind::kIndicate:
          switch (a.indication) {
            case CallIndication::kMakeCallComplete:
              if (!outgoing || ++make_call_completes > 1) std::abort();
              if (a.status == Status::kSuccess && !vc_active) std::abort();
              break;
            case CallIndication::kIncomingCall:
            case CallIndication::kCallConnected:
              if (outgoing) std::abort();
              break;
            case CallIndication::kIncomingClose:
              if (closed || ++incoming_closes > 1) std::abort();
              break;
            case CallIndication::kCloseComplete:
              if (!closed || ++close_completes > 1) std::abort();
              break;
          }
          break;
        case CallAction::Kind::kFree:
          if (i + 1 != out.size() || vc_active || c.state() != CallState::kNull) std::abort();
          freed = true;
          break;
      }
    }
    if (!freed && c.state() == CallState::kNull) std::abort();  // null only once freed
  }
};

// A request that returns false must leave no trace.
void refused_means_nothing(bool done, const CallActions& out) {
  if (!done && !out.empty()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  static const CallTimers timers;
  Time now{};
  Client cl;
  cl.outgoing = in.u8() & 1;
  CallActions out;
  CallFsm c = cl.outgoing ? CallFsm::outgoing(7, now, timers, out) : CallFsm::incoming(7, 42, timers, out);
  cl.check(c, out);

  for (int steps = 0; !in.empty() && !cl.freed && steps < 1024; ++steps) {
    out.clear();
    switch (in.u8() % 10) {
      case 0:
        refused_means_nothing(c.accept(now, out), out);
        break;
      case 1:
        refused_means_nothing(c.defer(now, out), out);
        break;
      case 2:
        refused_means_nothing(c.reject(in.u8(), out), out);
        break;
      case 3: {
        const bool done = c.close(now, out);
        refused_means_nothing(done, out);
        cl.closed = cl.closed || done;
        break;
      }
      case 4:
        c.enquire(now, out);
        break;
      case 5:
        c.peer_lost(out, in.u8() & 1 ? cause::kTemporaryFailure : cause::kDestinationOutOfOrder);
        break;
      case 6:
      case 7: {
        Message m;
        m.type = kTypes[in.u8() % std::size(kTypes)];
        m.call_ref = 7;
        const uint8_t has = in.u8();
        if (has & 1) m.cause = CauseIe{in.u8(), static_cast<uint8_t>(in.u8() % 3)};
        if (has & 2) m.call_state = in.u8() % 13;
        if (has & 4) m.vci = in.u32();
        c.on_message(m, now, out);
        break;
      }
      case 8:  // the clock jumps, maybe past a deadline
        now += std::chrono::milliseconds(in.u16());
        c.on_timer(now, out);
        break;
      case 9:  // the next deadline, exactly
        if (auto d = c.next_deadline()) {
          now = *d;
          c.on_timer(now, out);
        }
        break;
    }
    cl.check(c, out);
  }

  // The client closes and the timers run out: the call ends.
  for (int round = 0; round < 4 && !cl.freed; ++round) {
    out.clear();
    if (c.close(now, out)) cl.closed = true;
    cl.check(c, out);
    if (cl.freed) break;
    out.clear();
    auto d = c.next_deadline();
    if (!d) std::abort();  // neither closed nor waiting for anything: stuck
    now = *d;
    c.on_timer(now, out);
    cl.check(c, out);
  }
  if (!cl.freed) std::abort();
  return 0;
}
