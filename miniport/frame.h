// Ethernet and DATA framing (PROTOCOL.md sections 1 and 2): pure codecs over
// spans that check every length before reading a byte and never allocate.
//
//   auto eth = decode_eth(frame);                        // dst, src, EtherType
//   auto d = decode_data(frame.subspan(kEthHeaderLen));  // vci, flags, payload view
//   size_t n = *encode_data_frame(dst, src, vci, payload, out);
#pragma once

#include <cstdint>
#include <span>

#include "miniport/mac_address.h"
#include "miniport/status.h"

namespace miniport {

inline constexpr uint16_t kEtherTypeSig = 0x88B5;   // signaling (IEEE local experimental 1)
inline constexpr uint16_t kEtherTypeData = 0x88B6;  // data on a VC (local experimental 2)
inline constexpr size_t kEthHeaderLen = 14;
inline constexpr size_t kDataHeaderLen = 8;
inline constexpr size_t kMinEthFrame = 60;  // without FCS: senders pad up to this

namespace data_field {  // byte offsets inside the DATA header
inline constexpr size_t kVci = 0;
inline constexpr size_t kLen = 4;
inline constexpr size_t kFlags = 6;
}  // namespace data_field

struct EthHeader {
  MacAddress dst;
  MacAddress src;
  uint16_t ether_type = 0;
};

// A decoded DATA header; payload views the input buffer (padding excluded).
struct DataView {
  uint32_t vci = 0;
  uint16_t flags = 0;
  std::span<const uint8_t> payload;
};

// Errors: kInvalidLength when in is shorter than 14 bytes.
[[nodiscard]] Result<EthHeader> decode_eth(std::span<const uint8_t> in) noexcept;

// Decodes the Ethernet payload of a DATA frame. Errors: kInvalidLength when
// the header is truncated or `len` runs past the end (rx_malformed);
// kInvalidData for VCI 0, which is never valid.
[[nodiscard]] Result<DataView> decode_data(std::span<const uint8_t> in) noexcept;

// Writes the 14-byte Ethernet header and the 8-byte DATA header in front of a
// payload that is already at out[22...], then pads to 60 bytes. Returns the
// frame length. Errors: kInvalidData for VCI 0; kInvalidLength for a payload
// over 65535 bytes; kBufferTooShort when out cannot hold the frame.
[[nodiscard]] Result<size_t> encode_data_header(const MacAddress& dst, const MacAddress& src, uint32_t vci,
                                                size_t payload_len, std::span<uint8_t> out) noexcept;

// Same, copying the payload into place first.
[[nodiscard]] Result<size_t> encode_data_frame(const MacAddress& dst, const MacAddress& src, uint32_t vci,
                                               std::span<const uint8_t> payload,
                                               std::span<uint8_t> out) noexcept;

}  // namespace miniport
