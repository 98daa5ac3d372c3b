#include "emulator/impairment.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "cm/call_fsm.h"
#include "cm/sig_codec.h"
#include "emulator/unique_fd.h"
#include "miniport/byte_order.h"
#include "miniport/frame.h"

namespace emulator {

namespace {

uint64_t splitmix64(uint64_t& x) noexcept {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }

miniport::Unexpected bad(std::string msg) {
  set_last_error(std::move(msg));
  return miniport::fail(miniport::Status::kInvalidData);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// Splits "12.5ms" into 12.5 and "ms".
bool split_number(std::string_view v, double& num, std::string_view& unit) {
  size_t i = 0;
  while (i < v.size() && (std::isdigit(static_cast<unsigned char>(v[i])) || v[i] == '.')) ++i;
  if (i == 0) return false;
  auto [p, ec] = std::from_chars(v.data(), v.data() + i, num);
  if (ec != std::errc() || p != v.data() + i || !std::isfinite(num)) return false;
  unit = v.substr(i);
  return true;
}

Result<double> parse_pct(std::string_view key, std::string_view v) {
  double n;
  std::string_view unit;
  if (!split_number(v, n, unit) || (unit != "%" && !unit.empty()))
    return bad(std::string(key) + ": expected a percentage like 1.5%, got '" + std::string(v) + "'");
  return n;
}

Result<Duration> parse_time(std::string_view key, std::string_view v) {
  double n;
  std::string_view unit;
  if (!split_number(v, n, unit))
    return bad(std::string(key) + ": expected a time like 10ms, got '" + std::string(v) + "'");
  double scale;
  if (unit == "ns") scale = 1;
  else if (unit == "us") scale = 1e3;
  else if (unit == "ms") scale = 1e6;
  else if (unit == "s") scale = 1e9;
  else return bad(std::string(key) + ": time unit must be ns, us, ms or s, got '" + std::string(v) + "'");
  double ns = n * scale;
  if (ns > 3.6e12) return bad(std::string(key) + ": more than an hour: '" + std::string(v) + "'");
  return Duration(static_cast<int64_t>(std::llround(ns)));
}

Result<uint64_t> parse_rate(std::string_view v) {
  double n;
  std::string_view unit;
  if (!split_number(v, n, unit))
    return bad("rate: expected a rate like 10mbit, got '" + std::string(v) + "'");
  double scale;
  if (unit == "bit" || unit == "bps" || unit.empty()) scale = 1;
  else if (unit == "kbit") scale = 1e3;
  else if (unit == "mbit") scale = 1e6;
  else if (unit == "gbit") scale = 1e9;
  else return bad("rate: unit must be bit, kbit, mbit or gbit, got '" + std::string(v) + "'");
  double bps = n * scale;
  if (bps < 1 || bps > 1e13) return bad("rate: out of range (1bit..10000gbit): '" + std::string(v) + "'");
  return static_cast<uint64_t>(std::llround(bps));
}

Result<uint64_t> parse_uint(std::string_view key, std::string_view v) {
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size() || v.empty())
    return bad(std::string(key) + ": expected an unsigned integer, got '" + std::string(v) + "'");
  return n;
}

std::string fmt_double(double d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", d);
  return buf;
}

std::string fmt_time(Duration d) {
  int64_t ns = d.count();
  if (ns % 1000000000 == 0) return std::to_string(ns / 1000000000) + "s";
  if (ns % 1000000 == 0) return std::to_string(ns / 1000000) + "ms";
  if (ns % 1000 == 0) return std::to_string(ns / 1000) + "us";
  return std::to_string(ns) + "ns";
}

}  // namespace

Rng::Rng(uint64_t seed) noexcept {
  for (auto& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() noexcept {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

bool ImpairmentConfig::active() const noexcept {
  return loss_pct > 0 || duplicate_pct > 0 || corrupt_pct > 0 || reorder_pct > 0 ||
         delay.count() > 0 || jitter.count() > 0 || rate_bps > 0 || !faults.empty();
}

namespace {

// "drop:CONNECT_ACK#2@7", "delay:RELEASE:300ms", "drop:*".
Result<FaultRule> parse_fault(std::string_view v) {
  const std::string whole(v);
  auto wrong = [&](const std::string& why) {
    return bad("fault '" + whole + "': " + why +
               " (expected ACTION:TYPE[#N][@CALLREF][:DURATION], e.g. drop:CONNECT_ACK, drop:SETUP#2, "
               "delay:RELEASE:300ms)");
  };
  FaultRule r;
  const size_t c1 = v.find(':');
  if (c1 == std::string_view::npos) return wrong("no message type");
  const std::string_view action = v.substr(0, c1);
  if (action == "drop") r.action = FaultRule::Action::kDrop;
  else if (action == "delay") r.action = FaultRule::Action::kDelay;
  else return wrong("unknown action '" + std::string(action) + "' (drop or delay)");
  v = v.substr(c1 + 1);
  const size_t c2 = v.find(':');
  std::string_view target = v.substr(0, c2);
  const std::string_view dur = c2 == std::string_view::npos ? std::string_view() : v.substr(c2 + 1);
  auto number = [](std::string_view digits, uint64_t most) -> std::optional<uint64_t> {
    auto n = parse_uint("fault", digits);
    if (!n || *n < 1 || *n > most) return std::nullopt;
    return *n;
  };
  if (const size_t at = target.find('@'); at != std::string_view::npos) {
    const auto ref = number(target.substr(at + 1), 0x7FFFFFFF);
    if (!ref) return wrong("call reference must be 1..2147483647");
    r.call_ref = static_cast<uint32_t>(*ref);
    target = target.substr(0, at);
  }
  if (const size_t hash = target.find('#'); hash != std::string_view::npos) {
    const auto n = number(target.substr(hash + 1), 1'000'000'000);
    if (!n) return wrong("#N must be 1..1000000000");
    r.nth = static_cast<uint32_t>(*n);
    target = target.substr(0, hash);
  }
  if (target != "*") {
    for (int t = 0; t < 256 && !r.msg_type; ++t) {
      if (!cm::is_known(static_cast<uint8_t>(t))) continue;
      std::string_view name = cm::to_string(static_cast<cm::MsgType>(t));
      if (name.size() != target.size()) continue;
      bool same = true;
      for (size_t i = 0; i < name.size(); ++i)
        same = same && std::toupper(static_cast<unsigned char>(target[i])) == name[i];
      if (same) r.msg_type = static_cast<uint8_t>(t);
    }
    if (!r.msg_type) return wrong("unknown message type '" + std::string(target) + "' (SETUP, CONNECT, ... or *)");
  }
  if (r.action == FaultRule::Action::kDelay) {
    if (dur.empty()) return wrong("delay needs a duration");
    r.delay = COEMU_TRY(parse_time("fault delay", dur));
    if (r.delay.count() <= 0) return wrong("the delay must be positive");
  } else if (!dur.empty()) {
    return wrong("drop takes no duration");
  }
  return r;
}

std::string fault_to_string(const FaultRule& r) {
  std::string s = r.action == FaultRule::Action::kDrop ? "drop:" : "delay:";
  s += r.msg_type ? cm::to_string(static_cast<cm::MsgType>(*r.msg_type)) : "*";
  if (r.nth != 0) s += "#" + std::to_string(r.nth);
  if (r.call_ref) s += "@" + std::to_string(*r.call_ref);
  if (r.action == FaultRule::Action::kDelay) s += ":" + fmt_time(r.delay);
  return s;
}

}  // namespace

Result<void> ImpairmentConfig::validate() const {
  auto pct_ok = [](double p) { return std::isfinite(p) && p >= 0 && p <= 100; };
  if (!pct_ok(loss_pct)) return bad("loss must be within 0..100%");
  if (!pct_ok(duplicate_pct)) return bad("duplicate must be within 0..100%");
  if (!pct_ok(corrupt_pct)) return bad("corrupt must be within 0..100%");
  if (!pct_ok(reorder_pct)) return bad("reorder must be within 0..100%");
  if (delay.count() < 0) return bad("delay must not be negative");
  if (jitter.count() < 0) return bad("jitter must not be negative");
  if (jitter > delay) return bad("jitter must not exceed delay (frames cannot leave before they are sent)");
  // As netem: reordering means some frames skip the delay, so there must be one.
  if (reorder_pct > 0 && delay.count() == 0) return bad("reorder needs a delay (reordered frames skip it)");
  if (queue_limit == 0) return bad("limit must be at least 1");
  return {};
}

Result<ImpairmentConfig> ImpairmentConfig::parse(std::string_view spec) {
  ImpairmentConfig c;
  spec = trim(spec);
  if (spec.empty() || spec == "none") return c;
  while (!spec.empty()) {
    size_t comma = spec.find(',');
    std::string_view item = trim(spec.substr(0, comma));
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    size_t eq = item.find('=');
    if (eq == std::string_view::npos)
      return bad("impairment '" + std::string(item) + "': expected key=value");
    std::string_view key = trim(item.substr(0, eq));
    std::string_view val = trim(item.substr(eq + 1));
    if (key == "loss") c.loss_pct = COEMU_TRY(parse_pct(key, val));
    else if (key == "duplicate") c.duplicate_pct = COEMU_TRY(parse_pct(key, val));
    else if (key == "corrupt") c.corrupt_pct = COEMU_TRY(parse_pct(key, val));
    else if (key == "reorder") c.reorder_pct = COEMU_TRY(parse_pct(key, val));
    else if (key == "delay") c.delay = COEMU_TRY(parse_time(key, val));
    else if (key == "jitter") c.jitter = COEMU_TRY(parse_time(key, val));
    else if (key == "rate") c.rate_bps = COEMU_TRY(parse_rate(val));
    else if (key == "seed") c.seed = COEMU_TRY(parse_uint(key, val));
    else if (key == "fault") c.faults.push_back(COEMU_TRY(parse_fault(val)));
    else if (key == "limit") {
      uint64_t n = COEMU_TRY(parse_uint(key, val));
      if (n == 0 || n > 1000000) return bad("limit: must be within 1..1000000");
      c.queue_limit = static_cast<uint32_t>(n);
    } else {
      return bad("unknown impairment '" + std::string(key) +
                 "' (known: loss, delay, jitter, reorder, duplicate, corrupt, rate, limit, seed, fault)");
    }
  }
  COEMU_TRY(c.validate());
  return c;
}

std::string ImpairmentConfig::to_string() const {
  std::string s;
  auto add = [&](std::string item) {
    if (!s.empty()) s += ',';
    s += item;
  };
  if (loss_pct > 0) add("loss=" + fmt_double(loss_pct) + "%");
  if (delay.count() > 0) add("delay=" + fmt_time(delay));
  if (jitter.count() > 0) add("jitter=" + fmt_time(jitter));
  if (reorder_pct > 0) add("reorder=" + fmt_double(reorder_pct) + "%");
  if (duplicate_pct > 0) add("duplicate=" + fmt_double(duplicate_pct) + "%");
  if (corrupt_pct > 0) add("corrupt=" + fmt_double(corrupt_pct) + "%");
  if (rate_bps > 0) add("rate=" + std::to_string(rate_bps) + "bit");
  if (rate_bps > 0 && queue_limit != 1000) add("limit=" + std::to_string(queue_limit));
  for (const FaultRule& f : faults) add("fault=" + fault_to_string(f));
  if (s.empty()) return "none";
  add("seed=" + std::to_string(seed));
  return s;
}

Impairer::Impairer(const ImpairmentConfig& cfg) : cfg_(cfg), rng_(cfg.seed), fault_seen_(cfg.faults.size(), 0) {}

std::optional<Duration> Impairer::apply_faults(std::span<const uint8_t> frame) {
  Duration extra{0};
  if (cfg_.faults.empty() || frame.size() < miniport::kEthHeaderLen ||
      miniport::load_be16(frame.data() + 12) != miniport::kEtherTypeSig)
    return extra;
  auto f = cm::decode_sig(frame.subspan(miniport::kEthHeaderLen));
  if (!f || f->hdr.kind != cm::SigKind::kMsg || f->body.size() < 8) return extra;
  const uint8_t type = f->body[0];
  const uint32_t ref = miniport::load_be32(f->body.data() + 4) & ~cm::kCallRefToOriginator;
  for (size_t i = 0; i < cfg_.faults.size(); ++i) {
    const FaultRule& r = cfg_.faults[i];
    if ((r.msg_type && *r.msg_type != type) || (r.call_ref && *r.call_ref != ref)) continue;
    if (++fault_seen_[i] != r.nth && r.nth != 0) continue;
    ++counters_.faulted;
    if (r.action == FaultRule::Action::kDrop) return std::nullopt;
    extra += r.delay;
  }
  return extra;
}

void Impairer::submit(std::span<const uint8_t> frame, Time now) {
  ++counters_.frames_in;
  // Every frame consumes the same seven draws, in this order, whatever the
  // settings, so changing one impairment does not reshuffle the others' fate.
  const double u_loss = rng_.uniform();
  const double u_dup = rng_.uniform();
  const double u_corrupt = rng_.uniform();
  const double u_reorder = rng_.uniform();
  const double u_jitter = rng_.uniform();
  const uint64_t corrupt_draw = rng_.next();
  (void)rng_.next();  // reserved, keeps the stride at seven

  // Targeted faults come first and draw nothing: adding one leaves every
  // other frame's fate as it was.
  const std::optional<Duration> fault = apply_faults(frame);
  if (!fault) return;
  if (u_loss * 100 < cfg_.loss_pct) {
    ++counters_.dropped_loss;
    return;
  }
  Duration d = cfg_.delay;
  if (cfg_.jitter.count() > 0) {
    double j = (2 * u_jitter - 1) * static_cast<double>(cfg_.jitter.count());
    d += Duration(static_cast<int64_t>(j));
  }
  if (u_reorder * 100 < cfg_.reorder_pct) {
    d = Duration(0);  // netem's reorder: this frame goes at once, ahead of delayed ones
    ++counters_.reordered;
  }
  d += *fault;  // a fault's delay holds even a reordered frame
  Time due = now + d;
  const bool dup = u_dup * 100 < cfg_.duplicate_pct;
  const bool corrupt = u_corrupt * 100 < cfg_.corrupt_pct;

  if (cfg_.rate_bps > 0) {
    while (!rate_backlog_.empty() && rate_backlog_.front() <= now) rate_backlog_.pop_front();
    if (rate_backlog_.size() >= cfg_.queue_limit) {
      ++counters_.dropped_queue;
      return;
    }
  }
  enqueue(frame, due, now, corrupt, corrupt_draw);
  if (dup) {
    ++counters_.duplicated;
    enqueue(frame, due, now, false, 0);
  }
}

void Impairer::enqueue(std::span<const uint8_t> frame, Time due, Time now, bool corrupt,
                       uint64_t corrupt_draw) {
  if (cfg_.rate_bps > 0) {
    // The frame starts serializing when the wire is free, and is due when its
    // last bit has left: frames queue behind each other as on a real link.
    const Time start = std::max(due, link_free_at_);
    const auto tx_ns = static_cast<int64_t>(
        (static_cast<unsigned __int128>(frame.size()) * 8 * 1'000'000'000) / cfg_.rate_bps);
    due = start + Duration(tx_ns);
    link_free_at_ = due;
    rate_backlog_.push_back(due);
  }
  std::vector<uint8_t> bytes(frame.begin(), frame.end());
  if (corrupt && !bytes.empty()) {
    // Flip one bit past the Ethernet header, so the frame still reaches its
    // peer and exercises the receiver's parser rather than the bridge.
    const size_t first = bytes.size() > 14 ? 14 : 0;
    const size_t idx = first + (corrupt_draw >> 3) % (bytes.size() - first);
    bytes[idx] ^= static_cast<uint8_t>(1u << (corrupt_draw & 7));
    ++counters_.corrupted;
  }
  if (due > now) ++counters_.delayed;
  queue_.push(Pending{due, seq_++, std::move(bytes)});
}

}  // namespace emulator
