// MacAddress: a 48-bit Ethernet address as a value, with text conversion
// ("02:00:00:00:00:0a").
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace miniport {

struct MacAddress {
  std::array<uint8_t, 6> bytes{};

  static constexpr MacAddress broadcast() { return {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}; }
  // A locally administered unicast address (02:..) from a 40-bit number, for
  // labs and tests (never collides with a vendor's address).
  static constexpr MacAddress local(uint64_t n) {
    return {{0x02, static_cast<uint8_t>(n >> 32), static_cast<uint8_t>(n >> 24),
             static_cast<uint8_t>(n >> 16), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)}};
  }
  // Parses "aa:bb:cc:dd:ee:ff" (hex, either case); nullopt otherwise.
  static std::optional<MacAddress> parse(std::string_view s) {
    if (s.size() != 17) return std::nullopt;
    MacAddress m;
    for (size_t i = 0; i < 6; ++i) {
      if (i < 5 && s[i * 3 + 2] != ':') return std::nullopt;
      int v = 0;
      for (size_t k = 0; k < 2; ++k) {
        char c = s[i * 3 + k];
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (d < 0) return std::nullopt;
        v = v * 16 + d;
      }
      m.bytes[i] = static_cast<uint8_t>(v);
    }
    return m;
  }
  [[nodiscard]] std::string to_string() const {
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", bytes[0], bytes[1], bytes[2],
                  bytes[3], bytes[4], bytes[5]);
    return buf;
  }
  [[nodiscard]] bool is_multicast() const { return bytes[0] & 1; }
  friend bool operator==(const MacAddress&, const MacAddress&) = default;
};

}  // namespace miniport
