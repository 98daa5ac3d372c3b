#include "tools/qos_spec.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "tools/units.h"

namespace tools {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t c = s.find(sep, start);
    out.push_back(s.substr(start, c == std::string::npos ? std::string::npos : c - start));
    if (c == std::string::npos) return out;
    start = c + 1;
  }
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// A rate in bytes/s from "100M" (bit/s), "100Mbit", "12.5MB" (bytes/s).
std::optional<double> parse_rate_bytes(std::string v) {
  bool bytes = false;
  if (ends_with(v, "bit")) v.resize(v.size() - 3);
  else if (ends_with(v, "bps")) v.resize(v.size() - 3);
  else if (ends_with(v, "B")) v.resize(v.size() - 1), bytes = true;
  if (!v.empty() && v.back() == 'm' && v.size() > 1) v.back() = 'M';  // tc writes 100mbit
  if (!v.empty() && v.back() == 'g' && v.size() > 1) v.back() = 'G';
  auto n = parse_si(v);
  if (!n) return std::nullopt;
  return bytes ? *n : *n / 8;
}

}  // namespace

std::variant<cm::Traffic, std::string> parse_qos(const std::string& spec) {
  const auto parts = split(spec, ',');
  cm::FlowSpec f;
  const std::string& svc = parts[0];
  if (svc == "best-effort" || svc == "be") f.service_type = 1;
  else if (svc == "controlled-load" || svc == "cl") f.service_type = 2;
  else if (svc == "guaranteed" || svc == "gs") f.service_type = 3;
  else
    return fmt::format("'{}': the service comes first: best-effort, controlled-load or guaranteed", svc);

  std::optional<uint64_t> bucket, peak;
  for (size_t i = 1; i < parts.size(); ++i) {
    const auto eq = parts[i].find('=');
    if (eq == std::string::npos) return fmt::format("'{}': expected KEY=VALUE", parts[i]);
    const std::string key = parts[i].substr(0, eq), val = parts[i].substr(eq + 1);
    auto too_big = [&](double v) { return v > 4294967295.0; };
    if (key == "rate" || key == "peak") {
      auto r = parse_rate_bytes(val);
      if (!r || *r < 1 || too_big(*r))
        return fmt::format("{}='{}': expected a rate such as 100M (bit/s) or 12.5MB (bytes/s), up to 34G", key, val);
      (key == "rate" ? f.token_rate : f.peak) = static_cast<uint32_t>(std::llround(*r));
      if (key == "peak") peak = f.peak;
    } else if (key == "bucket" || key == "sdu" || key == "min") {
      auto b = parse_size(val);
      if (!b || too_big(static_cast<double>(*b)))
        return fmt::format("{}='{}': expected a size such as 64k or 1500", key, val);
      if (key == "bucket") bucket = *b;
      else (key == "sdu" ? f.max_sdu : f.min_policed) = static_cast<uint32_t>(*b);
    } else if (key == "latency" || key == "jitter") {
      auto t = parse_seconds(val);
      if (!t || *t * 1e6 > 4294967295.0) return fmt::format("{}='{}': expected a time such as 10ms", key, val);
      (key == "latency" ? f.latency : f.delay_variation) = static_cast<uint32_t>(std::llround(*t * 1e6));
    } else {
      return fmt::format("'{}': unknown key (rate, bucket, peak, latency, jitter, sdu, min)", key);
    }
  }
  if (f.service_type >= 2 && f.token_rate == 0)
    return fmt::format("'{}' needs rate=, e.g. {},rate=10M", svc, svc);
  if (bucket && *bucket < 64) return fmt::format("bucket={}: at least 64 bytes", *bucket);
  f.bucket = bucket ? static_cast<uint32_t>(*bucket)
                    : static_cast<uint32_t>(std::max<double>(4096, std::ceil(f.token_rate / 100.0)));
  if (!peak) f.peak = f.token_rate;
  if (f.peak < f.token_rate) return fmt::format("peak below rate");
  return cm::Traffic{f, f};
}

const char* service_name(uint32_t service_type) {
  switch (service_type) {
    case 0: return "no traffic";
    case 1: return "best effort";
    case 2: return "controlled load";
    case 3: return "guaranteed";
    default: return "unknown service";
  }
}

std::string describe_flowspec(const cm::FlowSpec& f) {
  std::string s = service_name(f.service_type);
  if (f.token_rate)
    s += fmt::format(" {} (bucket {})", human_bits_per_s(8.0 * f.token_rate), human_bytes(f.bucket));
  return s;
}

}  // namespace tools
