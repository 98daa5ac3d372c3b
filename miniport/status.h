// Status: the one error vocabulary of coemu, with NDIS names and values, and
// Result<T>, the value-or-Status every fallible function returns.
//
//   Result<size_t> n = link.send_burst(frames);
//   if (!n) fmt::print("send failed: {}\n", to_string(n.error()));
//
// Values are the legacy NDIS encodings from ndis.h (condis-spec.md section 14),
// so a trace or a log line can be compared with Windows documentation as is.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace miniport {

enum class Status : uint32_t {
  // The operation completed. Never stored in a Result (a value means success).
  kSuccess = 0x00000000,
  // Client API only: the completion handler runs later on the control thread.
  kPending = 0x00000103,
  // An OID request that nobody handles; the caller may try another target.
  kNotRecognized = 0x00010001,
  // A request that is legal in form but refused in this state (delete an active VC).
  kNotAccepted = 0x00010003,
  // make_call on a VC that already carries a call or a pending make-call.
  kCallActive = 0x00010007,
  // Generic failure with no better code; the message beside it says why.
  kFailure = 0xC0000001,
  // A bounded resource is exhausted (ring full, pool empty, OS out of memory);
  // retry later or shed load.
  kResources = 0xC000009A,
  // The feature exists in NDIS but not here, or the OS refused the operation as
  // unsupported (EOPNOTSUPP); do not retry.
  kNotSupported = 0xC00000BB,
  // The object is being torn down; requests on it fail from now on.
  kClosing = 0xC0010002,
  // An OID was cancelled or a queued send was flushed by a reset or shutdown.
  kRequestAborted = 0xC001000C,
  // A length field or a buffer size does not add up (truncated input).
  kInvalidLength = 0xC0010014,
  // A field holds a value outside its domain (bad name, bad option, bad PDU).
  kInvalidData = 0xC0010015,
  // The output buffer is too small for what must be written into it.
  kBufferTooShort = 0xC0010016,
  // An OID this target does not know.
  kInvalidOid = 0xC0010017,
  // The device disappeared under us (TAP deleted, namespace gone).
  kAdapterRemoved = 0xC0010018,
  // A SAP that is malformed.
  kInvalidSap = 0xC0010020,
  // A SAP that another client already registered.
  kSapInUse = 0xC0010021,
  // An address that is malformed or unknown (node address, MAC, IP, netns).
  kInvalidAddress = 0xC0010022,
  // Send on a VC that is not active (R72).
  kVcNotActivated = 0xC0010023,
  // The called node is down or unreachable (ATM cause mapping).
  kDestOutOfOrder = 0xC0010024,
  // No VC (or VCI) can be allocated for this call.
  kVcNotAvailable = 0xC0010025,
  // The requested cell/bit rate cannot be admitted.
  kCellrateNotAvailable = 0xC0010026,
  // The QoS asked for is incompatible with what the peer offers.
  kIncompatableQos = 0xC0010027,
  // No route to the called address.
  kNoRouteToDestination = 0xC0010029,
};

// The enumerator's NDIS name without the prefix, e.g. "INVALID_DATA";
// "UNKNOWN" for a value outside the enum.
[[nodiscard]] std::string_view to_string(Status s) noexcept;

// True when a status means the object (call, association) must be released,
// false when only the offending PDU or request is dropped.
[[nodiscard]] constexpr bool is_fatal(Status s) noexcept {
  switch (s) {
    case Status::kInvalidLength:
    case Status::kInvalidData:
    case Status::kBufferTooShort:
    case Status::kResources:
    case Status::kPending:
    case Status::kSuccess:
    case Status::kNotRecognized:
    case Status::kInvalidOid:
      return false;
    default:
      return true;
  }
}

template <class T>
using Result = tl::expected<T, Status>;

// Void results: Result<void> works with tl::expected.
using Unexpected = tl::unexpected<Status>;

[[nodiscard]] inline Unexpected fail(Status s) { return Unexpected(s); }

}  // namespace miniport

namespace miniport::detail {
template <class T>
T take(Result<T>&& r) { return std::move(*r); }
inline void take(Result<void>&&) {}
}  // namespace miniport::detail

// Propagates an error Result from the enclosing function (which must return a
// Result); otherwise yields the value. Uses a GNU statement expression, which
// g++ and clang both accept.
//   size_t n = COEMU_TRY(link.send_burst(frames));
//   COEMU_TRY(nl.set_up(name));
#define COEMU_TRY(expr)                                                     \
  ({                                                                        \
    auto coemu_try_r_ = (expr);                                             \
    if (!coemu_try_r_) return ::miniport::Unexpected(coemu_try_r_.error()); \
    ::miniport::detail::take(std::move(coemu_try_r_));                      \
  })
