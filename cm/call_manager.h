// CallManager: the node's call manager, sans-I/O. It owns the neighbor table,
// the signaling transport, the address-family opens, the SAP registry and the
// calls, drives the miniport's VC table, and turns client requests, SIG
// frames and the time into SIG frames to send and client events.
//
//   CallManager cm(cfg, miniport.vcs());
//   CmOutput out;
//   cm.start(now, out);                                  // first HELLO
//   auto af = cm.open_af(client, kCoemuAf);
//   auto sap = cm.register_sap(af->id, spec);
//   VcId vc = *cm.create_vc(af->id);
//   cm.make_call(vc, "beta", spec, now, out);            // PENDING; kMakeCallComplete later
//   cm.on_sig_frame(src_mac, eth_payload, now, out);
//   cm.on_timer(now, out);                               // at next_deadline()
//   for (auto& f : out.frames) send(f); for (auto& e : out.events) deliver(e);
//
// Point-to-point and point-to-multipoint calls (parties, R56-R60) and PVCs.
// A point-to-multipoint call is kept as one call state machine per party:
// the root's parties go out as SETUP (the first) or ADD_PARTY and come down
// with DROP_PARTY; a leaf node sees each party as an incoming call. The
// translation between party messages and the call machine lives here.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cm/address_family.h"
#include "cm/call_fsm.h"
#include "cm/call_table.h"
#include "cm/neighbors.h"
#include "cm/sap_registry.h"
#include "cm/transport.h"
#include "miniport/miniport.h"
#include "miniport/token_bucket.h"
#include "miniport/vc_table.h"

namespace cm {

using miniport::VcId;
using ClientId = uint64_t;

// The CM's OIDs (ntddndis.h, condis-spec R83).
namespace co_oid {
inline constexpr uint32_t kAddPvc = 0xFE000001;
inline constexpr uint32_t kDeletePvc = 0xFE000002;
inline constexpr uint32_t kGetAddresses = 0xFE000006;
// Sets the CM sends its clients (R13, R18, R83); each has no buffer.
inline constexpr uint32_t kAddressChange = 0xFE000007;     // then query GET_ADDRESSES
inline constexpr uint32_t kSignalingEnabled = 0xFE000008;  // calls can be made and dispatched again
inline constexpr uint32_t kSignalingDisabled = 0xFE000009; // they cannot (the link is down)
inline constexpr uint32_t kAfClose = 0xFE00000A;           // legacy: close your AF (the R14 sequence)
}  // namespace co_oid

// A permanent VC as an operator configures it on one node: the label we
// receive on, the peer's label we send on, and the peer's NIC address.
struct PvcSpec {
  uint32_t rx_vci = 0;  // 1..miniport::kPvcVciLimit-1, unique on the node
  uint32_t tx_vci = 0;  // non-zero
  MacAddress peer = {};  // unicast
};
// CO_PVC as coemu lays it out (host byte order, like CO_ADDRESS_LIST):
// u64 NdisAfHandle (informational), then CO_SPECIFIC_PARAMETERS
// {u32 ParameterType = kCoemuPvcParameters; u32 Length = 16; rx_vci u32,
// tx_vci u32, peer MAC 6 bytes, 2 bytes 0}: 32 bytes.
inline constexpr uint32_t kCoemuPvcParameters = 1;
inline constexpr size_t kCoPvcLen = 32;
[[nodiscard]] std::array<uint8_t, kCoPvcLen> encode_co_pvc(const PvcSpec& pvc, uint64_t af_handle = 0);
// The PVC in a CO_PVC buffer; kInvalidLength for a short buffer, kInvalidData
// for another parameter type or length.
[[nodiscard]] Result<PvcSpec> decode_co_pvc(std::span<const uint8_t> buf);

// Limits that keep one peer or one client from taking the whole node (a
// SETUP flood, a runaway client). A SETUP or ADD_PARTY past a peer's limit is
// refused with cause 47 (resource unavailable); a client request past its
// limit answers RESOURCES. 0 turns a limit off.
struct CmLimits {
  // Live calls and parties with one peer MAC, made and taken. Off by
  // default: the VC table (one VC per call) is the node's own limit.
  uint32_t calls_per_peer = 0;
  // Incoming calls from one peer that are not active yet (offered to a
  // client, or answered and waiting for CONNECT_ACK): a SYN backlog.
  uint32_t pending_per_peer = 1024;
  // SETUPs and ADD_PARTYs taken from one peer per second, in bursts of up
  // to this many (a token bucket). 10,000 is far above what a lab's callers
  // make and refuses the bulk of a flood; `coemu bench calls` turns it off.
  uint32_t setups_per_second = 10'000;
  uint32_t saps_per_client = 64;  // SAPs one client holds at once
  // No limit at all (benchmarks).
  static constexpr CmLimits none() { return {0, 0, 0, 0}; }
};

struct CmConfig {
  std::string node_address = {};  // 1-32 of [A-Za-z0-9._-]
  MacAddress mac = {};
  uint32_t incarnation = 1;       // non-zero, new at every start
  TransportConfig transport = {};
  NeighborConfig neighbors = {};
  CallTimers timers = {};
  // EMU choices the docs leave open: whether a close with live calls pends
  // (default) or is refused (R15). af.open_pends is set from open_af_pends.
  AfOptions af = {};
  // EMU (R11/R12, R20/R22): OpenAf and RegisterSap complete at once
  // (nullopt, the default) or answer PENDING and complete this much later.
  // A pended SAP takes calls before its completion (R23).
  std::optional<Duration> open_af_pends = std::nullopt;
  std::optional<Duration> register_sap_pends = std::nullopt;
  // Admission control (QoS): the sum of the guaranteed and controlled-load
  // token rates of this node's calls stays within this, in each direction,
  // bytes/s (the link's speed: 10 Gbit/s by default).
  uint64_t link_bytes_per_s = 1'250'000'000;
  CmLimits limits = {};
  // EMU (R16 vs R18): the CM asks clients to close with NotifyCloseAf
  // (default) or with the legacy OID_CO_AF_CLOSE set.
  bool legacy_af_close = false;
};

// What a request that may pend returns (R1): the new handle, and whether a
// completion event for it is still to come.
template <class Id>
struct Issued {
  Id id;
  bool pending = false;
  operator Id() const { return id; }  // NOLINT(google-explicit-constructor): reads as its handle
};

// The largest message body the CM encodes.
inline constexpr size_t kMaxMessageBody = 2048;

// One SIG frame to put on the wire: Ethernet destination and the payload
// after the Ethernet header (SIG header + body).
struct SigOut {
  MacAddress dst;
  std::vector<uint8_t> payload;
};

// What a client is told (the ProtocolCl* callbacks), in order.
struct ClientEvent {
  enum class Kind : uint8_t {
    kAfRegistered,       // R10: `address_family` can be opened (also told to clients attaching later)
    kOpenAfComplete,     // R12: a pended open of `af` finished with `status`
    kCloseAfComplete,    // R15: a pended close of `af` finished
    kNotifyCloseAf,      // R16: the CM is closing `af`: tear down and close it
    kRegisterSapComplete,  // R22: a pended registration of `sap` finished with `status`
    kCreateVc,           // R28: the CM made `vc` on `af` for an incoming call (before kIncomingCall)
    kDeleteVc,           // R31/R66: the CM deleted its `vc`; the handle is dead
    kIncomingCall,       // on `sap`, new CM-created VC `vc`, from `peer_address`
    kMakeCallComplete,   // `status` (+ `cause` on failure)
    kCallConnected,
    kIncomingClose,      // `status`, `cause`
    kCloseCallComplete,
    kDeregisterSapComplete,
    kNeighborEvent,      // a duplicate address and the like: `detail`
    kLinkStatus,         // R84/R85: the NIC's link is `link_up` at `speed_bps` (every client)
    kAddPartyComplete,   // R56: `party` joined the root's call on `vc`, or not (`status`, `cause`)
    kDropPartyComplete,  // R58: the client's drop of `party` finished
    kIncomingDropParty,  // R60: the leaf of `party` left; the client answers with drop_party
    kOidRequest,         // R76/R83: the CM sets `oid` on the client's `af`; answer with oid_request_complete(`request`)
    kModifyQosComplete,  // R62: the client's modify_call_qos on `vc` finished: `status`, `cause`, `traffic` in force
    kIncomingQosChange,  // R63: the peer changed the call's FLOWSPECs to `traffic` (the VC runs with them already)
    kVcStatus,           // R84: the miniport's `indication` for `vc` (only this VC's client hears it); `errors`, `dropped`
  };
  Kind kind = Kind::kNeighborEvent;
  ClientId client = 0;
  AfOpenId af = {};
  uint32_t address_family = 0;
  VcId vc = {};
  SapId sap = {};
  Status status = Status::kSuccess;
  uint8_t cause = 0;
  std::string peer_address = {};
  std::string detail = {};
  bool link_up = false;
  uint64_t speed_bps = 0;
  uint32_t party = 0;      // point-to-multipoint root: the party handle (0: none)
  bool multipoint = false;  // kIncomingCall: a party of a point-to-multipoint call (we are a leaf)
  uint32_t oid = 0;         // kOidRequest
  uint32_t indication = 0;  // kVcStatus: the NDIS status code (miniport::Indication)
  uint32_t errors = 0;      // kVcStatus: miniport::vc_error bits
  uint64_t dropped = 0;     // kVcStatus: the VC's receive losses so far
  uint64_t request = 0;     // kOidRequest: the id its completion names
  // kIncomingCall, kMakeCallComplete: the call's FLOWSPECs as this client
  // sees them (transmit = what it sends); params_changed (R42,
  // CALL_PARAMETERS_CHANGED) when the peer granted less than was asked.
  Traffic traffic = {};
  bool params_changed = false;
};

struct CmOutput {
  std::vector<SigOut> frames;
  std::vector<ClientEvent> events;
};

struct CmCounters {
  uint64_t frames_malformed = 0;  // SIG frames or bodies dropped (3, 4.2 step 1): the sum of the next five
  uint64_t sig_short = 0;         // shorter than the 24-byte SIG header
  uint64_t sig_bad_version = 0;   // a version other than 1
  uint64_t sig_bad_kind = 0;      // a kind other than HELLO, MSG, ACK or RESET
  uint64_t sig_bad_length = 0;    // hdr_len < 24, or hdr_len + body_len past the end of the frame
  uint64_t msg_malformed = 0;     // a MSG body that is not a message: truncated, an IE past the end
  uint64_t msg_unknown_type = 0;  // answered STATUS with cause 97 (4.2 step 2)
  uint64_t msg_bad_ie = 0;        // an IE error, cause 96, 99 or 100 (4.2 step 4)
  uint64_t msg_unknown_call = 0;  // no call with that (peer MAC, call reference): cause 81 or ignored
  uint64_t msg_wrong_state = 0;   // answered STATUS with cause 101: a duplicate SETUP, say (4.2 step 5)
  uint64_t hellos_dropped = 0;
  uint64_t calls_refused = 0;     // SETUPs answered with RELEASE_COMPLETE
  uint64_t setups_limited = 0;    // ... of them, past a peer's limit (cause 47, CmLimits)
  uint64_t status_sent = 0;
  uint64_t client_oids_sent = 0;       // OID requests the CM made of its clients
  uint64_t client_oids_completed = 0;  // ... and their completions (R77)
  uint64_t vc_indications = 0;         // VC-scoped status indications on this CM's VCs (R84)
};

// EMU: the Q.850 cause a callee's refusal status goes out with: RESOURCES
// 47 (resource unavailable), INCOMPATABLE_QOS / CELLRATE_NOT_AVAILABLE 49
// (QoS unavailable), INVALID_SAP 88 (incompatible destination),
// DEST_OUT_OF_ORDER 27, NO_ROUTE_TO_DESTINATION 3, anything else 21 (call
// rejected). refusal_status() is its inverse, for a client that wants a cause.
[[nodiscard]] uint8_t refusal_cause(Status answer) noexcept;
[[nodiscard]] std::optional<Status> refusal_status(uint8_t cause) noexcept;

// One call (or one party of a point-to-multipoint call) as the CM holds it.
struct CallView {
  std::string peer_address;
  MacAddress peer;
  uint32_t call_ref = 0;     // without the direction bit
  bool originated = false;   // we sent the SETUP (or ADD_PARTY)
  bool multipoint = false;
  uint16_t endpoint = 0;     // ENDPOINT_REF of the party
  uint32_t party = 0;        // root: the client's party handle
  CallState state = CallState::kNull;
  VcId vc;
  ClientId client = 0;
  Traffic traffic;           // as this end sees it
  struct Timer {
    const char* name;        // "T303", "T322", ...
    Duration left;
  };
  std::vector<Timer> timers;
};

// A VC the CM knows of: whose it is and what it carries.
struct VcView {
  VcId vc;
  ClientId client = 0;
  bool has_call = false;
  bool root = false;         // a point-to-multipoint root
  size_t parties = 0;
  std::optional<uint32_t> pvc;  // the PVC (its rx label) a PERMANENT_VC call uses
  std::string name;          // R36 instance name, once assigned
};

class CallManager {
 public:
  CallManager(const CmConfig& cfg, miniport::VcTable& vcs);
  // Calls keep the address of cfg.timers: the manager stays where it is.
  CallManager(const CallManager&) = delete;
  CallManager& operator=(const CallManager&) = delete;

  // Sends the first HELLO (then one every hello interval from on_timer).
  void start(Time now, CmOutput& out);

  // ---- client requests (R1: a final status, or kPending + an event) ----
  // R11/R12: with open_af_pends the open completes (kOpenAfComplete) at
  // now + that delay; until then the handle takes no requests. Errors:
  // kFailure for an AF type the CM did not register, or while it closes its AFs.
  [[nodiscard]] Result<Issued<AfOpenId>> open_af(ClientId c, uint32_t af, Time now = Time{});
  // R14/R15: kSuccess; or kPending while incoming calls still live (then
  // kCloseAfComplete); kNotAccepted instead with af.refuse_busy_close;
  // kFailure for a dead handle, a second close, or SAPs or VCs still held.
  [[nodiscard]] Status close_af(AfOpenId af);
  // R16: asks every client with an open AF to tear down and close it
  // (kNotifyCloseAf); new opens fail from now on. all_afs_closed() tells when done.
  void notify_close_afs(CmOutput& out);
  [[nodiscard]] bool all_afs_closed() const noexcept { return afs_.opens() == 0; }
  [[nodiscard]] const AddressFamilies& afs() const noexcept { return afs_; }
  // R20-R23: registered at once, or with register_sap_pends PENDING and
  // kRegisterSapComplete later; calls are dispatched on it meanwhile.
  // kResources when the client holds CmLimits::saps_per_client SAPs.
  [[nodiscard]] Result<Issued<SapId>> register_sap(AfOpenId af, const SapSpec& spec, Time now = Time{});
  // R24: kPending, then kDeregisterSapComplete; calls on it are untouched.
  // kFailure for a dead handle, a second deregister, or a SAP whose
  // registration has not completed (its handle is not the client's yet, R22).
  [[nodiscard]] Status deregister_sap(SapId sap, CmOutput& out);
  // R27: a client VC for outgoing calls. Errors: kFailure for a dead AF handle.
  [[nodiscard]] Result<VcId> create_vc(AfOpenId af);
  // R30: kNotAccepted while a call uses it; kFailure for a dead handle.
  [[nodiscard]] Status delete_vc(VcId vc);
  // R37-R40: kPending, then kMakeCallComplete. Errors at once: kCallActive
  // (the VC has a call), kFailure (dead handle), kInvalidAddress (a bad or
  // unknown node address: no HELLO heard from it), kResources (the node has
  // CmLimits::calls_per_peer calls with that peer).
  // `traffic`: the FLOWSPECs asked for (R44; transmit = what we send), best
  // effort by default. A call whose guaranteed or controlled-load rates do
  // not fit the link (CmConfig::link_bytes_per_s) completes at once with
  // kIncompatableQos, cause 49; so does one the callee's node cannot take.
  [[nodiscard]] Status make_call(VcId vc, std::string_view called, const SapSpec& sap, Time now, CmOutput& out,
                                 const Traffic& traffic = {});
  // R38: a point-to-multipoint call with its first party: returns the party
  // handle; kMakeCallComplete (with `party`) follows. Errors as make_call.
  // Leaves receive only; the root sends one copy to each leaf. `traffic`:
  // the VC's transmit FLOWSPEC (its receive one reads as "no traffic"); a
  // guaranteed or controlled-load VC is shaped so each leaf gets that rate,
  // and each party holds that rate of the link (admission, cause 49).
  [[nodiscard]] Result<uint32_t> make_multipoint_call(VcId vc, std::string_view called, const SapSpec& sap, Time now,
                                                      CmOutput& out, const Traffic& traffic = {});
  // R56: one more party on a point-to-multipoint call that has an active
  // party; kAddPartyComplete follows. Errors: kFailure (dead handle, not a
  // multipoint call, or none of its parties up yet), kResources (kMaxLeaves
  // parties), kInvalidAddress, kInvalidData as make_call. R57: `traffic`
  // other than the VC's is reset to the VC's (the completion has
  // params_changed); a party the link cannot carry fails with cause 49.
  [[nodiscard]] Result<uint32_t> add_party(VcId vc, std::string_view called, const SapSpec& sap, Time now,
                                           CmOutput& out, const std::optional<Traffic>& traffic = std::nullopt);
  // R58/R59: drops a party; the handle is dead for the client at once.
  // kPending then kDropPartyComplete; kFailure for a dead handle, a drop
  // under way, or the call's last party (close the call instead, R59).
  [[nodiscard]] Status drop_party(uint32_t party, Time now, CmOutput& out);
  // Parties of the point-to-multipoint call on `vc` that the client holds.
  [[nodiscard]] size_t parties(VcId vc) const;
  // R51/R52: the SAP owner's answer to kIncomingCall: kSuccess accepts,
  // kPending answers later (CALL_PROCEEDING goes out; the caller waits T310
  // for the real answer), anything else rejects, with the cause
  // refusal_cause() gives the status.
  // `granted` (accepting only): the FLOWSPECs the callee takes, each token
  // rate at most what was offered (else kInvalidData): the caller sees them
  // with params_changed (R42).
  [[nodiscard]] Status incoming_call_complete(VcId vc, Status answer, Time now, CmOutput& out,
                                              const std::optional<Traffic>& granted = std::nullopt);
  // R61/R62: new FLOWSPECs for the call on `vc` (transmit = what we send).
  // On an active call: MODIFY_REQUEST; kModifyQosComplete follows with what
  // is in force (the VC re-activated first on success; the old FLOWSPECs
  // kept on failure, e.g. cause 49 when either link cannot take it). R52:
  // a callee whose answer pends changes what it will grant, at once.
  // Errors: kFailure (no such call, or it is not up or being offered),
  // kClosing (a modify is already under way).
  [[nodiscard]] Status modify_call_qos(VcId vc, const Traffic& wanted, Time now, CmOutput& out);
  // R64: kPending, then kCloseCallComplete. kFailure when no call or a
  // close is already under way, or (R59) while a multipoint call has more
  // than one party.
  [[nodiscard]] Status close_call(VcId vc, Time now, CmOutput& out);
  // Asks the peer for its state of the call on `vc` (STATUS_ENQUIRY; T322
  // runs). The STATUS answer ends it; an answer saying the peer has no such
  // call (STATUS with state 0, or RELEASE_COMPLETE with cause 81) clears the
  // call here, as does T322 running out (cause 102): the two ends agree
  // again. kFailure when `vc` has no call.
  [[nodiscard]] Status enquire_call(VcId vc, Time now, CmOutput& out);

  // R76/R83: an OID query a client sends to the CM with its AF handle.
  // OID_CO_GET_ADDRESSES answers a CO_ADDRESS_LIST (ntddndis.h layout, host
  // byte order) holding this node's address. Statuses (R79): kInvalidOid
  // for an OID the CM does not know, kInvalidLength with bytes_needed for a
  // short buffer, kFailure for a dead AF handle.
  [[nodiscard]] miniport::OidResult query_oid(AfOpenId af, uint32_t oid, std::span<uint8_t> out) const;
  // R68/R76: an OID set a client sends to the CM with its AF handle.
  // OID_CO_ADD_PVC puts a CO_PVC on the node's list of configured PVCs (any
  // client may then use it, make_pvc_call); OID_CO_DELETE_PVC takes it off,
  // and a call on it is closed by the CM (EMU: kIncomingClose, cause 27, the
  // VC deactivated at once; the client answers with close_call). Statuses
  // (R79): kInvalidOid, kInvalidLength (bytes_needed), kInvalidData for bad
  // parameters, a label already configured or a PVC not configured,
  // kFailure for a dead AF handle.
  [[nodiscard]] miniport::OidResult set_oid(AfOpenId af, uint32_t oid, std::span<const uint8_t> in, CmOutput& out);
  // R44 PERMANENT_VC: a make-call on the configured PVC that receives on
  // `pvc_rx_vci`. No signaling: the VC is activated with the PVC's labels
  // and kMakeCallComplete follows (kPending). close_call deactivates it.
  // Errors: kFailure (dead handle), kCallActive (the VC has a call),
  // kInvalidData (no such PVC), kNotAccepted (another VC uses it), the VC
  // table's error while the label drains from an earlier use (kInvalidData).
  [[nodiscard]] Status make_pvc_call(VcId vc, uint32_t pvc_rx_vci, CmOutput& out);
  [[nodiscard]] size_t pvcs() const noexcept { return pvcs_.size(); }
  // R77/R78: a client completes an OID request the CM made of it (now or
  // later, in any order; several may be outstanding). kFailure for a
  // request that is unknown, answered already, or whose AF has closed.
  [[nodiscard]] Status oid_request_complete(uint64_t request, Status status);
  [[nodiscard]] size_t oids_outstanding() const noexcept { return client_oids_.size(); }

  // R36 (NdisCoAssignInstanceName): names a VC BASE-N with a number unique
  // on this node; a second call returns the first name; the name lives until
  // the VC is deleted. Errors: kFailure for a dead VC handle; kInvalidData
  // for an empty base or one over 64 characters.
  [[nodiscard]] Result<std::string> assign_instance_name(VcId vc, std::string_view base);

  // R84/R85: the link's state changed. Down: every call is cleared at once
  // (kIncomingClose, cause 27 destination out of order; nothing can be sent).
  // Up: a HELLO goes out at once, and every peer we had calls with when the
  // link went down is sent RESTART for all calls, so it clears its side too.
  void on_link(bool up, Time now, CmOutput& out);
  [[nodiscard]] bool link_up() const noexcept { return link_up_; }
  // R84: a VC-scoped indication from the miniport. The CM, sharing the VC,
  // counts it and passes it to the VC's client alone (kVcStatus). False
  // when the VC is not (or no longer) one of this CM's.
  bool on_vc_status(const miniport::StatusIndication& ind, CmOutput& out);

  // ---- wire and time ----
  void on_sig_frame(const MacAddress& src, std::span<const uint8_t> payload, Time now, CmOutput& out);
  void on_timer(Time now, CmOutput& out);
  [[nodiscard]] std::optional<Time> next_deadline() const;

  [[nodiscard]] size_t calls() const noexcept { return calls_.size(); }
  // What `coemu show` prints: each call (each party of a point-to-multipoint
  // call) with its state, timers and FLOWSPECs, and each VC the CM knows.
  [[nodiscard]] std::vector<CallView> call_views(Time now) const;
  [[nodiscard]] std::vector<VcView> vc_views() const;
  [[nodiscard]] const NeighborTable& neighbors() const noexcept { return neighbors_; }
  [[nodiscard]] const SapRegistry& saps() const noexcept { return saps_; }
  [[nodiscard]] const CmCounters& counters() const noexcept { return c_; }
  [[nodiscard]] const Transport& transport() const noexcept { return transport_; }

 private:
  // Laid out small: a node holds up to a million (see bench scale).
  struct Call {
    CallFsm fsm;
    MacAddress peer = {};
    uint16_t endpoint = 0;       // ENDPOINT_REF (point-to-multipoint)
    uint32_t ref = 0;            // without the direction bit
    uint32_t peer_name = NameTable::kNone;  // the peer's node address (names_)
    VcId vc = {};
    ClientId client = 0;
    AfOpenId af = {};
    SapId incoming_sap = {};          // incoming: the SAP the call was offered on
    uint32_t party = 0;          // root: the client's party handle
    uint32_t peer_vci = 0;       // the label the VC sends on (for re-activation, R33)
    uint32_t reserved_tx = 0, reserved_rx = 0;  // admission: what this call holds of the link, bytes/s
    bool originated = false;     // we sent the SETUP
    bool cm_vc = false;          // a VC the CM created for an incoming call
    // Point-to-multipoint: this machine is one party.
    bool p2mp = false;
    bool via_add_party = false;  // offered with ADD_PARTY (else SETUP)
    bool drop_mode = false;      // our close goes out as DROP_PARTY
    bool client_drop = false;    // root: the client dropped it (drop_party, not close_call)
    bool answer_drop = false;    // the peer's DROP_PARTY is answered with DROP_PARTY_ACK
    bool rejecting = false;      // leaf: the client refused an ADD_PARTY (ADD_PARTY_REJECT)
    bool params_changed = false; // the peer granted less than we asked
    bool pending_in = false;     // incoming and not active yet: held against the peer's pending limit
    uint8_t leaf = 0;            // root: the party's index in the VC's leaf set
    Traffic traffic = {};        // as this end sees it (transmit = what we send)
    std::unique_ptr<Traffic> modify_old = {};  // our MODIFY_REQUEST awaits its answer: what was in force
  };
  using Key = CallKey;
  // A point-to-multipoint root VC: its call reference, parties by handle.
  struct Root {
    uint32_t ref = 0;
    uint16_t next_endpoint = 0;
    std::vector<uint32_t> parties = {};
    Traffic traffic = {};  // the FLOWSPECs every party gets (R57)
  };
  struct VcInfo {
    AfOpenId af;
    ClientId client = 0;
    std::optional<Key> call;
    std::optional<uint32_t> pvc = {};  // the configured PVC (its rx label) a PERMANENT_VC call uses
    bool pvc_gone = false;        // that PVC was deleted: the client has been told, its close ends it
    uint32_t gen = 0;             // the handle's generation (the table is by slot)
    std::unique_ptr<Root> root = {};  // set while the VC is a point-to-multipoint root
  };
  struct Pvc {
    PvcSpec spec;
    std::optional<VcId> user;  // the VC whose call uses it
  };
  // The peer's node address a call names.
  [[nodiscard]] const std::string& peer_address(const Call& c) const { return names_.name(c.peer_name); }
  // Ends a PERMANENT_VC call on `vc` (the client closed it).
  Status close_pvc_call(VcId vc, VcInfo& info, CmOutput& out);

  void run(const Key& k, CallActions& acts, Time now, CmOutput& out);
  // The called node and SAP of a make-call or add-party: the peer's MAC, or
  // kInvalidAddress (bad or unknown node address) / kInvalidData (bad SAP).
  Result<MacAddress> resolve_called(const std::string& addr, const SapSpec& sap) const;
  Status start_call(VcId vc, std::string_view called, const SapSpec& sap, bool multipoint, Time now, CmOutput& out,
                    const Traffic& traffic = {});
  // Admission (QoS): whether `t` fits the link next to what calls hold
  // besides `c` (if given); reserve() moves c's holding to t.
  [[nodiscard]] bool fits(const Traffic& t, const Call* c = nullptr) const;
  void reserve(Call& c, const Traffic& t);
  void reserve(Call& c, uint64_t tx, uint64_t rx);  // bytes/s of the link in each direction
  void unreserve(Call& c);
  // The VC parameters of a call's VC: shaped to its transmit FLOWSPEC when
  // that is guaranteed or controlled load.
  [[nodiscard]] static miniport::VcParams vc_params(const Call& c, uint32_t peer_vci);
  // A party message in, as the call machine reads it (ADD_PARTY_ACK is its
  // CONNECT...), and the keys of the parties it is for.
  // MODIFY_REQUEST / ACK / REJECT on an active point-to-point call (R61-R63).
  void on_modify(const MacAddress& src, Call& c, const Message& m, Time now, CmOutput& out);
  void qos_event(const Call& c, ClientEvent::Kind kind, Status status, uint8_t cause, CmOutput& out);
  void on_party_message(const MacAddress& src, const std::vector<Key>& keys, const Message& m, Time now,
                        CmOutput& out);
  // R57: whether a leaf's CONNECT / ADD_PARTY_ACK takes the root's stream
  // at other than the VC's FLOWSPEC, and the refusal of such a party.
  static bool takes_less(const Call& c, const Message& m);
  void refuse_short_party(const Key& k, Time now, CmOutput& out);
  // A party message that names its party (ENDPOINT_REF), built by the CM itself.
  void answer_party(const MacAddress& peer, MsgType type, uint32_t wire_ref, uint16_t endpoint, uint8_t cause,
                    Time now, CmOutput& out);
  // The message type a party's machine asked for, as it goes on the wire
  // (nullopt: not sent, e.g. CONNECT_ACK to an ADD_PARTY_ACK).
  static std::optional<MsgType> party_wire_type(const Call& c, MsgType fsm_type);
  // What the client of a root party is told for the machine's indication.
  ClientEvent::Kind root_party_event(const Call& c, CallIndication i) const;
  // Live parties of the root call on `vc` other than `except` not already
  // leaving on the peer's word.
  size_t other_live_parties(const VcInfo& v, uint32_t except) const;
  std::vector<Key> keys_of_call(const MacAddress& peer, uint32_t ref, bool originated);
  void send_message(const MacAddress& peer, const Message& m, Time now, CmOutput& out);
  void flush(Actions& ta, Time now, CmOutput& out);
  void on_message(const MacAddress& src, const Decoded& d, Time now, CmOutput& out);
  void on_setup(const MacAddress& src, const Message& m, Time now, CmOutput& out, bool add_party = false);
  void answer(const MacAddress& peer, MsgType type, uint32_t wire_ref, std::optional<CauseIe> cause,
              std::optional<uint8_t> state, Time now, CmOutput& out);
  void peer_gone(const MacAddress& peer, Time now, CmOutput& out);
  // Completes pended AF closes whose open holds nothing any more.
  void settle_closes(CmOutput& out);
  void run_completions(Time now, CmOutput& out);
  Call* find(const Key& k) { return calls_.find(k); }
  const Call* find(const Key& k) const { return calls_.find(k); }
  // The live call on a VC handle, if the handle is live and has one.
  std::optional<Key> call_on(VcId vc);

  CmConfig cfg_;
  miniport::VcTable& vcs_;
  Transport transport_;
  NeighborTable neighbors_;
  AddressFamilies afs_;
  SapRegistry saps_;
  CallTable<Call> calls_;
  SlotVector<VcInfo> vcs_info_;          // by VC slot
  std::map<uint32_t, std::string> vc_names_;  // R36 instance names, by VC slot
  NameTable names_;                      // the peers' node addresses the calls name
  // Calls' timer deadlines (time, call slot), earliest first. Entries go
  // stale when a timer stops or restarts; they are dropped when they come
  // up (CallFsm::due_at), so arming is O(log n) and nothing is searched.
  using Deadline = std::pair<Time, uint32_t>;
  mutable std::vector<Deadline> deadlines_;
  void queue_deadlines(uint32_t slot, Call& c);
  // Per-peer load (CmLimits): a SETUP from `peer` may be taken (and takes a
  // token); a call placed in or freed from the table is counted.
  bool admit_setup(const MacAddress& peer, Time now);
  [[nodiscard]] bool at_call_limit(const MacAddress& peer) const;
  Call& place(const Key& k, Call&& c);
  void settle_pending(Call& c);
  void unload(const Call& gone);
  void pop_deadline() const;  // the earliest entry goes
  void drop_stale_deadlines() const;
  // Forgets what the CM knew of a deleted VC (its info and R36 name).
  void forget_vc(uint32_t slot);
  const SapSpec* setup_sap_ = nullptr;   // the SAP of the SETUP start_call/add_party is sending
  std::map<uint32_t, AfOpenId> sap_af_;  // by SAP slot
  std::map<uint32_t, Pvc> pvcs_;         // configured PVCs by rx label (R68)
  std::map<uint32_t, Key> parties_;      // root parties by handle
  std::map<uint64_t, AfOpenId> client_oids_;  // outstanding CM -> client requests, with their AF
  // A closed AF's requests: their answers now go nowhere.
  void forget_oids(AfOpenId af);
  uint64_t next_request_ = 1;
  std::vector<ClientEvent> deferred_;          // events of requests without an output (open_af), sent at on_timer
  // An OID set to the client of `af` (R76: AF set from the CM).
  ClientEvent oid_request(AfOpenId af, uint32_t oid);
  uint32_t next_party_ = 1;
  uint64_t reserved_tx_ = 0, reserved_rx_ = 0;  // admission: held by live calls, bytes/s
  std::vector<VcId> retire_;             // CM-created VCs waiting for their deactivation
  struct Completion {                    // a pended open or registration, due at `at`
    Time at;
    std::optional<AfOpenId> af;
    std::optional<SapId> sap;
  };
  std::vector<Completion> completions_;
  uint32_t next_ref_ = 1;
  uint64_t next_instance_ = 1;
  bool link_up_ = true;
  std::vector<MacAddress> restart_on_link_up_;  // peers whose calls the link took down
  CmCounters c_;
  struct PeerLoad {
    uint32_t calls = 0;
    uint32_t pending = 0;
    miniport::TokenBucket setups;
    bool bucket_set = false;
  };
  struct MacLess {
    bool operator()(const MacAddress& a, const MacAddress& b) const { return a.bytes < b.bytes; }
  };
  // Only peers with live calls (or whose SETUP is being decided) have one.
  std::map<MacAddress, PeerLoad, MacLess> load_;
};

}  // namespace cm
