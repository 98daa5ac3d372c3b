#include "tools/units.h"

#include <fmt/core.h>

#include <cmath>
#include <cstdlib>

namespace tools {

namespace {

// Three significant digits at most, without trailing zeros: 8, 1.5, 12.3, 640.
std::string short_number(double v) {
  std::string s = fmt::format("{:.{}f}", v, v >= 100 ? 0 : v >= 10 ? 1 : 2);
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s;
}

std::string scaled(double v, double step, const char* const* units, int n) {
  int i = 0;
  while (i + 1 < n && std::fabs(v) >= step * 0.9995) {
    v /= step;
    ++i;
  }
  return short_number(v) + " " + units[i];
}

// Splits "1.5G" into 1.5 and "G"; nullopt when there is no number first.
std::optional<std::pair<double, std::string>> split_number(const std::string& s) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || !std::isfinite(v) || v < 0) return std::nullopt;
  return std::pair{v, std::string(end)};
}

}  // namespace

std::string human_bits_per_s(double bits_per_s) {
  static const char* const units[] = {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"};
  return scaled(bits_per_s, 1000, units, 5);
}

std::string human_bytes(double bytes) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  return scaled(bytes, 1024, units, 5);
}

std::string human_ns(double ns) {
  static const char* const units[] = {"ns", "us", "ms", "s"};
  return scaled(ns, 1000, units, 4);
}

std::optional<double> parse_si(const std::string& s) {
  auto p = split_number(s);
  if (!p) return std::nullopt;
  const std::string& u = p->second;
  if (u.empty()) return p->first;
  if (u == "k" || u == "K") return p->first * 1e3;
  if (u == "M") return p->first * 1e6;
  if (u == "G") return p->first * 1e9;
  return std::nullopt;
}

std::optional<uint64_t> parse_size(const std::string& s) {
  auto p = split_number(s);
  if (!p) return std::nullopt;
  const std::string& u = p->second;
  double mult = 0;
  if (u.empty() || u == "B") mult = 1;
  else if (u == "k" || u == "K" || u == "KiB") mult = 1024;
  else if (u == "M" || u == "MiB") mult = 1024.0 * 1024;
  else if (u == "G" || u == "GiB") mult = 1024.0 * 1024 * 1024;
  else return std::nullopt;
  const double v = p->first * mult;
  if (v > 1.8e19 || v != std::floor(v)) return std::nullopt;
  return static_cast<uint64_t>(v);
}

std::optional<uint32_t> parse_u32(const std::string& s) {
  if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  const unsigned long long n = std::stoull(s);
  if (n > 0xFFFFFFFFull) return std::nullopt;
  return static_cast<uint32_t>(n);
}

std::optional<double> parse_seconds(const std::string& s) {
  auto p = split_number(s);
  if (!p) return std::nullopt;
  const std::string& u = p->second;
  if (u.empty() || u == "s") return p->first;
  if (u == "ms") return p->first / 1e3;
  if (u == "us") return p->first / 1e6;
  if (u == "m" || u == "min") return p->first * 60;
  return std::nullopt;
}

}  // namespace tools
