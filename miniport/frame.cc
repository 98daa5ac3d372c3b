#include "miniport/frame.h"

#include <algorithm>
#include <cstring>

#include "miniport/byte_order.h"

namespace miniport {

Result<EthHeader> decode_eth(std::span<const uint8_t> in) noexcept {
  if (in.size() < kEthHeaderLen) return fail(Status::kInvalidLength);
  EthHeader h;
  std::copy_n(in.data(), 6, h.dst.bytes.begin());
  std::copy_n(in.data() + 6, 6, h.src.bytes.begin());
  h.ether_type = load_be16(in.data() + 12);
  return h;
}

Result<DataView> decode_data(std::span<const uint8_t> in) noexcept {
  if (in.size() < kDataHeaderLen) return fail(Status::kInvalidLength);
  const uint16_t len = load_be16(in.data() + data_field::kLen);
  if (kDataHeaderLen + size_t{len} > in.size()) return fail(Status::kInvalidLength);
  DataView v;
  v.vci = load_be32(in.data() + data_field::kVci);
  if (v.vci == 0) return fail(Status::kInvalidData);
  // Flags are reserved in v1: carried, never interpreted.
  v.flags = load_be16(in.data() + data_field::kFlags);
  v.payload = in.subspan(kDataHeaderLen, len);
  return v;
}

Result<size_t> encode_data_header(const MacAddress& dst, const MacAddress& src, uint32_t vci, size_t payload_len,
                                  std::span<uint8_t> out) noexcept {
  if (vci == 0) return fail(Status::kInvalidData);
  if (payload_len > 0xFFFF) return fail(Status::kInvalidLength);
  const size_t len = kEthHeaderLen + kDataHeaderLen + payload_len;
  const size_t padded = std::max(len, kMinEthFrame);
  if (out.size() < padded) return fail(Status::kBufferTooShort);
  uint8_t* p = out.data();
  std::memcpy(p, dst.bytes.data(), 6);
  std::memcpy(p + 6, src.bytes.data(), 6);
  store_be16(p + 12, kEtherTypeData);
  uint8_t* d = p + kEthHeaderLen;
  store_be32(d + data_field::kVci, vci);
  store_be16(d + data_field::kLen, static_cast<uint16_t>(payload_len));
  store_be16(d + data_field::kFlags, 0);
  if (padded > len) std::memset(p + len, 0, padded - len);
  return padded;
}

Result<size_t> encode_data_frame(const MacAddress& dst, const MacAddress& src, uint32_t vci,
                                 std::span<const uint8_t> payload, std::span<uint8_t> out) noexcept {
  const size_t need = kEthHeaderLen + kDataHeaderLen + payload.size();
  if (!payload.empty() && payload.size() <= 0xFFFF && vci != 0 && out.size() >= std::max(need, kMinEthFrame))
    std::memcpy(out.data() + kEthHeaderLen + kDataHeaderLen, payload.data(), payload.size());
  return encode_data_header(dst, src, vci, payload.size(), out);
}

}  // namespace miniport
