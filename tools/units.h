// Sizes, rates and durations in the units people read (and, for options,
// write): "8 Mbit/s", "1.5 KiB", "340 us"; "100M", "64k", "2s".
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace tools {

// 8e6 -> "8 Mbit/s", 1.5e9 -> "1.5 Gbit/s" (SI, as link speeds are given).
[[nodiscard]] std::string human_bits_per_s(double bits_per_s);
// 300 -> "300 B", 1536 -> "1.5 KiB", 3 << 20 -> "3 MiB".
[[nodiscard]] std::string human_bytes(double bytes);
// 340'000 -> "340 us", 1'250'000 -> "1.25 ms", 2.5e9 -> "2.5 s".
[[nodiscard]] std::string human_ns(double ns);

// "100M" -> 100'000'000; "64k" -> 64'000; "1.5G"; "640" (SI multipliers k, M,
// G, either case for k; a trailing "bit/s", "bps" or "b" is not accepted:
// callers say what the unit is). nullopt when malformed or negative.
[[nodiscard]] std::optional<double> parse_si(const std::string& s);
// "64k" / "64K" / "64KiB" -> 65536 (sizes are binary); "1500" -> 1500.
[[nodiscard]] std::optional<uint64_t> parse_size(const std::string& s);
// "4294967295" -> that number: decimal digits only, at most 2^32 - 1.
[[nodiscard]] std::optional<uint32_t> parse_u32(const std::string& s);
// "2s", "500ms", "100us", "1.5" (seconds) -> seconds.
[[nodiscard]] std::optional<double> parse_seconds(const std::string& s);

}  // namespace tools
