// Test frames: Ethernet frames of EtherType 0x88B6 whose payload carries a
// sequence number and a pattern derived from it, so a receiver can verify
// every byte.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "miniport/byte_order.h"
#include "miniport/mac_address.h"

namespace coemu_test {

inline std::vector<uint8_t> make_frame(const miniport::MacAddress& dst, const miniport::MacAddress& src,
                                       uint32_t seq, size_t len) {
  std::vector<uint8_t> f(len);
  std::copy(dst.bytes.begin(), dst.bytes.end(), f.begin());
  std::copy(src.bytes.begin(), src.bytes.end(), f.begin() + 6);
  miniport::store_be16(&f[12], 0x88B6);
  miniport::store_be32(&f[14], seq);
  for (size_t i = 18; i < len; ++i) f[i] = static_cast<uint8_t>(seq * 31 + i);
  return f;
}

inline bool is_test_frame(std::span<const uint8_t> f) {
  return f.size() >= 18 && miniport::load_be16(&f[12]) == 0x88B6;
}

inline uint32_t frame_seq(std::span<const uint8_t> f) { return miniport::load_be32(&f[14]); }

// True when every payload byte matches what make_frame wrote for its seq.
inline bool frame_intact(std::span<const uint8_t> f, size_t expected_len) {
  if (f.size() != expected_len || !is_test_frame(f)) return false;
  const uint32_t seq = frame_seq(f);
  for (size_t i = 18; i < f.size(); ++i)
    if (f[i] != static_cast<uint8_t>(seq * 31 + i)) return false;
  return true;
}

}  // namespace coemu_test
