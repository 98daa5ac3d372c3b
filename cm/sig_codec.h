// The signaling wire codec (PROTOCOL.md sections 3-5): SIG frame headers,
// signaling messages with their information elements, and HELLO bodies.
// Pure functions over spans: every length is checked before a byte is read,
// nothing is allocated, and decoded variable-length values are views into
// the input.
//
//   auto f = decode_sig(eth_payload);                  // header + body view
//   Decoded d = decode_message(f->body);               // checks of 4.2 steps 1, 2, 4
//   if (d.verdict == Verdict::kOk) handle(d.msg);
//   size_t n = *encode_message(msg, out);              // canonical IE order
//
// A message is accepted whole or not at all: decode_message reports the first
// IE error in wire order with its Q.850 cause, and the caller applies the
// message only on kOk (clearing messages excepted, as 4.2 step 4 says).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "miniport/status.h"

namespace cm {

using miniport::Result;
using miniport::Status;

// ---- SIG frame (section 3) ----

inline constexpr uint8_t kSigVersion = 1;
inline constexpr size_t kSigHeaderLen = 24;

enum class SigKind : uint8_t { kHello = 1, kMsg = 2, kAck = 3, kReset = 4 };

struct SigHeader {
  SigKind kind = SigKind::kHello;
  uint32_t incarnation = 0;
  uint32_t peer_incarnation = 0;
  uint32_t seq = 0;
  uint32_t ack = 0;
};

struct SigFrame {
  SigHeader hdr;
  std::span<const uint8_t> body;  // exactly body_len bytes; padding excluded
};

// Decodes the Ethernet payload of a SIG frame. Errors: kInvalidLength for a
// payload shorter than 24 bytes, hdr_len < 24, or hdr_len + body_len past the
// end; kInvalidData for a version other than 1 or an unknown kind. (Each is
// dropped and counted by the caller.)
[[nodiscard]] Result<SigFrame> decode_sig(std::span<const uint8_t> in) noexcept;

// Writes a v1 header (hdr_len 24) followed by body. Returns bytes written.
// Errors: kInvalidLength for a body over 65535 bytes; kBufferTooShort.
[[nodiscard]] Result<size_t> encode_sig(const SigHeader& h, std::span<const uint8_t> body,
                                        std::span<uint8_t> out) noexcept;

// ---- Messages (section 4) ----

enum class MsgType : uint8_t {
  kSetup = 0x05,
  kCallProceeding = 0x02,
  kConnect = 0x07,
  kConnectAck = 0x0F,
  kRelease = 0x4D,
  kReleaseComplete = 0x5A,
  kAddParty = 0x80,
  kAddPartyAck = 0x81,
  kAddPartyReject = 0x82,
  kDropParty = 0x83,
  kDropPartyAck = 0x84,
  kModifyRequest = 0x88,
  kModifyAck = 0x89,
  kModifyReject = 0x8A,
  kStatusEnquiry = 0x75,
  kStatus = 0x7D,
  kRestart = 0x46,
  kRestartAck = 0x4E,
};
[[nodiscard]] bool is_known(uint8_t type) noexcept;
[[nodiscard]] const char* to_string(MsgType t) noexcept;

enum class IeType : uint8_t {
  kCalledParty = 0x01,
  kCallingParty = 0x02,
  kSap = 0x03,
  kTraffic = 0x04,
  kVci = 0x05,
  kCause = 0x06,
  kEndpointRef = 0x07,
  kBearer = 0x08,
  kCallState = 0x09,
  kUserData = 0x0A,
  kNodeAddress = 0x10,
  kMtu = 0x11,
  kLinkSpeed = 0x12,
};
inline constexpr uint8_t kIeComprehensionRequired = 0x01;

// Q.850 causes used by the protocol (section 4.3).
namespace cause {
inline constexpr uint8_t kUnallocatedNumber = 1;     // CALLED_PARTY is not this node
inline constexpr uint8_t kNoRoute = 3;
inline constexpr uint8_t kNormalClearing = 16;
inline constexpr uint8_t kUserBusy = 17;
inline constexpr uint8_t kNoUserResponding = 18;
inline constexpr uint8_t kCallRejected = 21;
inline constexpr uint8_t kDestinationOutOfOrder = 27;
inline constexpr uint8_t kResponseToStatusEnquiry = 30;
inline constexpr uint8_t kNormalUnspecified = 31;
inline constexpr uint8_t kTemporaryFailure = 41;
inline constexpr uint8_t kResourceUnavailable = 47;
inline constexpr uint8_t kQosUnavailable = 49;
inline constexpr uint8_t kInvalidCallRef = 81;
inline constexpr uint8_t kIncompatibleDestination = 88;
inline constexpr uint8_t kMandatoryIeMissing = 96;
inline constexpr uint8_t kMessageTypeNonExistent = 97;
inline constexpr uint8_t kIeNonExistent = 99;
inline constexpr uint8_t kInvalidIeContents = 100;
inline constexpr uint8_t kMessageNotCompatibleWithState = 101;
inline constexpr uint8_t kRecoveryOnTimerExpiry = 102;
inline constexpr uint8_t kProtocolError = 111;
}  // namespace cause
[[nodiscard]] bool is_known_cause(uint8_t c) noexcept;
// The Q.850 name of a cause of section 4.3 ("normal clearing"), or nullptr.
[[nodiscard]] const char* cause_name(uint8_t c) noexcept;

enum class SapType : uint16_t { kSelector = 1, kService = 2, kWildcard = 3 };

struct FlowSpec {
  uint32_t token_rate = 0;  // bytes/s
  uint32_t bucket = 0;      // bytes
  uint32_t peak = 0;        // bytes/s
  uint32_t latency = 0;     // us
  uint32_t delay_variation = 0;  // us
  uint32_t service_type = 1;     // 0 no traffic, 1 best effort, 2 controlled load, 3 guaranteed
  uint32_t max_sdu = 0;
  uint32_t min_policed = 0;
  friend bool operator==(const FlowSpec&, const FlowSpec&) = default;
};

struct Traffic {
  FlowSpec transmit;  // as seen by the sender of the IE
  FlowSpec receive;
  friend bool operator==(const Traffic&, const Traffic&) = default;
};

struct SapValue {
  uint16_t type = 0;  // SapType, or an unknown type (well formed on the wire)
  std::span<const uint8_t> value;
};

struct CauseIe {
  uint8_t cause = 0;
  uint8_t location = 0;  // 0 the client, 1 the call manager, 2 the transport
};

// A signaling message. Absent IEs are empty optionals; spans view the bytes
// the message was decoded from (or the caller's storage when encoding).
struct Message {
  MsgType type = MsgType::kSetup;
  uint32_t call_ref = 0;
  std::optional<std::span<const uint8_t>> called_party;
  std::optional<std::span<const uint8_t>> calling_party;
  std::optional<SapValue> sap;
  std::optional<Traffic> traffic;
  std::optional<uint32_t> vci;
  std::optional<CauseIe> cause;
  std::optional<uint16_t> endpoint_ref;
  std::optional<uint8_t> bearer;
  std::optional<uint8_t> call_state;
  std::optional<std::span<const uint8_t>> user_data;
};

enum class Verdict : uint8_t {
  kOk,
  kMalformed,    // 4.2 step 1: dropped and counted, no call_ref to answer
  kUnknownType,  // 4.2 step 2: answer STATUS with cause 97
  kBadIe,        // 4.2 step 4: cause 99, 100 or 96 (see `cause`)
};

struct Decoded {
  Verdict verdict = Verdict::kMalformed;
  uint8_t cause = 0;     // for kUnknownType and kBadIe
  uint8_t raw_type = 0;  // the type byte as received
  Message msg;           // type and call_ref valid unless kMalformed; IEs read before an error
};

// Decodes and checks one message body (4.2 steps 1, 2 and 4; steps 3, 5 and
// 6 need call state and belong to the call manager).
[[nodiscard]] Decoded decode_message(std::span<const uint8_t> body) noexcept;

// Encodes a message with its IEs in ascending IE code order. Errors:
// kInvalidData when a present IE holds a value the protocol forbids (the
// encoder never produces what a decoder must refuse); kBufferTooShort.
[[nodiscard]] Result<size_t> encode_message(const Message& m, std::span<uint8_t> out) noexcept;

// ---- HELLO (section 3.1) ----

struct Hello {
  std::span<const uint8_t> node_address;
  std::optional<uint16_t> mtu;
  std::optional<uint64_t> link_speed;
};

// Errors: kInvalidData for a malformed IE, an unknown comprehension-required
// IE or a missing NODE_ADDRESS (the HELLO is dropped whole and counted).
[[nodiscard]] Result<Hello> decode_hello(std::span<const uint8_t> body) noexcept;
[[nodiscard]] Result<size_t> encode_hello(const Hello& h, std::span<uint8_t> out) noexcept;

// ---- Values (section 5) ----

// 1-32 bytes of [A-Za-z0-9._-].
[[nodiscard]] bool valid_node_address(std::span<const uint8_t> a) noexcept;
// A SAP value well formed for its type; unknown types are well formed.
[[nodiscard]] bool valid_sap(const SapValue& s) noexcept;
[[nodiscard]] bool valid_utf8(std::span<const uint8_t> s) noexcept;

}  // namespace cm
