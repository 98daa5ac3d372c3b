#include "tools/decode.h"

#include <fmt/core.h>

#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <tuple>
#include <vector>

#include "cm/sig_codec.h"
#include "emulator/pcap_reader.h"
#include "emulator/unique_fd.h"
#include "miniport/byte_order.h"
#include "miniport/frame.h"
#include "tools/qos_spec.h"
#include "tools/units.h"

namespace tools {

namespace {

using Json = nlohmann::ordered_json;
using miniport::MacAddress;

uint64_t mac_key(const MacAddress& m) {
  uint64_t k = 0;
  for (uint8_t b : m.bytes) k = k << 8 | b;
  return k;
}

std::string text(std::span<const uint8_t> s) { return std::string(s.begin(), s.end()); }

Json flowspec_json(const cm::FlowSpec& f) {
  return Json{{"service", service_name(f.service_type)}, {"token_rate", f.token_rate},
              {"bucket", f.bucket},       {"peak", f.peak},
              {"latency_us", f.latency},  {"delay_variation_us", f.delay_variation},
              {"max_sdu", f.max_sdu},     {"min_policed", f.min_policed}};
}

// The SAP as `coemu call` and `coemu listen` write it.
std::string sap_text(const cm::SapValue& s) {
  if (s.type == 1 && s.value.size() == 2) return std::to_string(miniport::load_be16(s.value.data()));
  if (s.type == 2) return "service:" + text(s.value);
  if (s.type == 3) return "wildcard";
  return fmt::format("type-{}", s.type);
}

std::string cause_text(uint8_t c) {
  const char* n = cm::cause_name(c);
  return fmt::format("cause {} ({})", c, n ? n : "unknown");
}

const char* msg_name(uint8_t type) {
  return cm::is_known(type) ? cm::to_string(static_cast<cm::MsgType>(type)) : nullptr;
}

// The IEs of a message, as words after its name, and as JSON members.
std::string ies_text(const cm::Message& m) {
  std::string s;
  auto add = [&](const std::string& w) { s += (s.empty() ? "" : " ") + w; };
  if (m.calling_party || m.called_party) {
    std::string called = m.called_party ? text(*m.called_party) : "?";
    if (m.sap) called += ":" + sap_text(*m.sap);
    add((m.calling_party ? text(*m.calling_party) : "?") + " -> " + called);
  }
  if (m.bearer) add(*m.bearer == 2 ? "p2mp" : "p2p");
  if (m.endpoint_ref) add(fmt::format("party {}", *m.endpoint_ref));
  if (m.traffic) add(describe_flowspec(m.traffic->transmit));
  if (m.vci) add(fmt::format("vci {}", *m.vci));
  if (m.cause) add(cause_text(m.cause->cause));
  if (m.call_state) add(fmt::format("state {}", *m.call_state));
  if (m.user_data) add(fmt::format("user data {} B", m.user_data->size()));
  return s;
}

void ies_json(const cm::Message& m, Json& j) {
  if (m.calling_party) j["calling"] = text(*m.calling_party);
  if (m.called_party) j["called"] = text(*m.called_party);
  if (m.sap) j["sap"] = sap_text(*m.sap);
  if (m.bearer) j["bearer"] = *m.bearer == 2 ? "p2mp" : "p2p";
  if (m.endpoint_ref) j["party"] = *m.endpoint_ref;
  if (m.traffic) j["traffic"] = Json{{"transmit", flowspec_json(m.traffic->transmit)},
                                     {"receive", flowspec_json(m.traffic->receive)}};
  if (m.vci) j["vci"] = *m.vci;
  if (m.cause) {
    j["cause"] = m.cause->cause;
    const char* n = cm::cause_name(m.cause->cause);
    j["cause_name"] = n ? n : "unknown";
    j["location"] = m.cause->location;
  }
  if (m.call_state) j["call_state"] = *m.call_state;
  if (m.user_data) j["user_data_len"] = m.user_data->size();
}

// Why a SIG frame is not one decode_sig accepts, in PROTOCOL.md's words.
std::string sig_problem(std::span<const uint8_t> p) {
  if (p.size() < cm::kSigHeaderLen) return fmt::format("{} bytes, shorter than a SIG header", p.size());
  if (p[0] != cm::kSigVersion) return fmt::format("version {}, not coemu v1", p[0]);
  const uint16_t hdr = miniport::load_be16(p.data() + 2), body = miniport::load_be16(p.data() + 4);
  if (hdr < cm::kSigHeaderLen) return fmt::format("hdr_len {} below 24", hdr);
  if (size_t{hdr} + body > p.size()) return fmt::format("body_len {} runs past the frame", body);
  return fmt::format("unknown kind {}", p[1]);
}

struct Step {
  int64_t ns;
  std::string from, to, what;
  Json json;
};

struct Tally {
  uint64_t frames = 0, bytes = 0;
};

struct Call {
  std::string id, caller, called, sap, bearer = "p2p";
  std::optional<cm::FlowSpec> traffic;
  int64_t start_ns = 0;
  std::optional<int64_t> connect_ns, end_ns;
  std::string cleared_by;
  std::optional<uint8_t> cause;
  bool refused = false, ended = false;
  uint32_t parties_added = 0, parties_dropped = 0;
  std::set<uint16_t> live_parties;  // point-to-multipoint: parties up in this trace
  std::set<uint16_t> all_parties;   // ... and every party offered
  std::string dropped_by;           // who sent the last DROP_PARTY, and its cause
  uint8_t drop_cause = 0;
  std::vector<Step> ladder;
  std::map<std::string, Tally> data;  // "alpha -> beta"
};

class Decoder {
 public:
  Decoder(const DecodeOptions& o, std::map<uint64_t, std::string> names) : o_(o), names_(std::move(names)) {}

  void frame(uint64_t no, const emulator::PcapFrame& f) {
    if (!first_ns_) first_ns_ = f.ns;
    Json j;
    j["frame"] = no;
    j["time"] = o_.absolute ? Json(wall(f.ns)) : Json(static_cast<double>(f.ns - *first_ns_) / 1e9);
    std::string line;
    auto eth = miniport::decode_eth(f.data);
    if (!eth) {
      j["proto"] = "other";
      j["error"] = "shorter than an Ethernet header";
      emit(j, fmt::format("{} bytes, shorter than an Ethernet header", f.data.size()), f.ns, "?", "?");
      return;
    }
    const std::string src = name(eth->src), dst = name(eth->dst);
    j["src"] = src;
    j["dst"] = dst;
    j["len"] = f.wire_len;
    const auto payload = f.data.subspan(miniport::kEthHeaderLen);
    if (eth->ether_type == miniport::kEtherTypeSig) {
      j["proto"] = "sig";
      line = sig(*eth, payload, f.ns, j);
    } else if (eth->ether_type == miniport::kEtherTypeData) {
      j["proto"] = "data";
      line = data(*eth, payload, j);
    } else {
      j["proto"] = "other";
      j["ether_type"] = fmt::format("0x{:04x}", eth->ether_type);
      line = fmt::format("EtherType 0x{:04x}, not coemu", eth->ether_type);
    }
    emit(j, line, f.ns, src, dst);
  }

  void print_calls() const {
    for (const Call& c : calls_) {
      if (o_.json) {
        fmt::print("{}\n", call_json(c).dump());
        continue;
      }
      fmt::print("call {}: {} -> {}:{}, {}{}\n", c.id, c.caller, c.called, c.sap,
                 c.bearer == "p2mp" ? "point-to-multipoint" : "point-to-point",
                 c.traffic ? ", " + describe_flowspec(*c.traffic) : "");
      for (const Step& s : c.ladder)
        fmt::print("  {:>10.3f} ms  {} -> {}  {}\n", static_cast<double>(s.ns - c.start_ns) / 1e6, s.from, s.to,
                   s.what);
      for (const auto& [dir, t] : c.data)
        fmt::print("  data {}: {} frame{}, {}\n", dir, t.frames, t.frames == 1 ? "" : "s", human_bytes(t.bytes));
      if (c.bearer == "p2mp")
        fmt::print("  parties: {} offered, {} accepted, {} dropped\n", c.all_parties.size(),
                   c.parties_added + (c.all_parties.count(0) && c.connect_ns ? 1 : 0), c.parties_dropped);
      fmt::print("  {}\n\n", outcome(c));
    }
    if (calls_.empty() && !o_.json) fmt::print("no calls in this trace\n");
  }

 private:
  std::string name(const MacAddress& m) const {
    if (m == MacAddress::broadcast()) return "broadcast";
    auto it = names_.find(mac_key(m));
    return it != names_.end() ? it->second : m.to_string();
  }

  static std::string wall(int64_t ns) {
    const time_t s = static_cast<time_t>(ns / 1'000'000'000);
    std::tm tm{};
    gmtime_r(&s, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return fmt::format("{}.{:09d}Z", buf, ns % 1'000'000'000);
  }

  void emit(const Json& j, const std::string& line, int64_t ns, const std::string& src, const std::string& dst) {
    if (o_.calls) return;
    if (o_.json) {
      fmt::print("{}\n", j.dump());
      return;
    }
    const std::string t = o_.absolute ? wall(ns) : fmt::format("{:.6f}", static_cast<double>(ns - *first_ns_) / 1e9);
    fmt::print("{:>5} {:>11} {} > {}  {}\n", j["frame"].get<uint64_t>(), t, src, dst, line);
  }

  std::string sig(const miniport::EthHeader& eth, std::span<const uint8_t> p, int64_t ns, Json& j) {
    auto f = cm::decode_sig(p);
    if (!f) {
      const std::string why = sig_problem(p);
      j["error"] = why;
      return "SIG " + why;
    }
    const auto& h = f->hdr;
    j["incarnation"] = fmt::format("0x{:08x}", h.incarnation);
    switch (h.kind) {
      case cm::SigKind::kHello: {
        j["kind"] = "HELLO";
        auto hello = cm::decode_hello(f->body);
        if (!hello) {
          j["error"] = "malformed HELLO";
          return "HELLO (malformed: dropped by receivers)";
        }
        j["address"] = text(hello->node_address);
        std::string s = "HELLO " + text(hello->node_address);
        if (hello->mtu) j["mtu"] = *hello->mtu, s += fmt::format(" mtu {}", *hello->mtu);
        if (hello->link_speed)
          j["link_speed"] = *hello->link_speed, s += " " + human_bits_per_s(static_cast<double>(*hello->link_speed));
        return s;
      }
      case cm::SigKind::kAck:
        j["kind"] = "ACK";
        j["ack"] = h.ack;
        return fmt::format("ACK ack {}", h.ack);
      case cm::SigKind::kReset:
        j["kind"] = "RESET";
        j["peer_incarnation"] = fmt::format("0x{:08x}", h.peer_incarnation);
        return fmt::format("RESET peer incarnation 0x{:08x}", h.peer_incarnation);
      case cm::SigKind::kMsg:
        break;
    }
    j["kind"] = "MSG";
    j["seq"] = h.seq;
    j["ack"] = h.ack;
    // The transport resends a MSG whose ack is late: same association (both
    // ends' incarnations: a restarted peer starts a new one at seq 1), a seq
    // already seen. It is shown, marked, and not counted twice in its call.
    uint32_t& last = last_seq_[{mac_key(eth.src), mac_key(eth.dst), h.incarnation, h.peer_incarnation}];
    const bool resent = h.seq <= last;
    if (!resent) last = h.seq;
    if (resent) j["retransmission"] = true;
    const std::string head = fmt::format("seq {} ack {}  {}", h.seq, h.ack, resent ? "(resent) " : "");
    const cm::Decoded d = cm::decode_message(f->body);
    if (d.verdict == cm::Verdict::kMalformed) {
      j["error"] = "message length disagrees with body_len or shorter than 8 bytes";
      return head + "malformed message";
    }
    const char* mname = msg_name(d.raw_type);
    const std::string type = mname ? mname : fmt::format("type 0x{:02x}", d.raw_type);
    const uint32_t ref = d.msg.call_ref & 0x7fffffff;
    const bool to_orig = (d.msg.call_ref & 0x80000000) != 0;
    j["msg"] = type;
    j["call_ref"] = ref;
    j["to_originator"] = to_orig;
    ies_json(d.msg, j);
    std::string words = ies_text(d.msg);
    if (d.verdict == cm::Verdict::kUnknownType) {
      j["error"] = "unknown message type (answered with STATUS, cause 97)";
      words += std::string(words.empty() ? "" : " ") + "[unknown type]";
    } else if (d.verdict == cm::Verdict::kBadIe) {
      j["error"] = "bad IE: " + cause_text(d.cause);
      words += std::string(words.empty() ? "" : " ") + "[bad IE: " + cause_text(d.cause) + "]";
    }
    // The originator of the call is the sender when bit 31 is clear.
    const MacAddress& originator = to_orig ? eth.dst : eth.src;
    const MacAddress& other = to_orig ? eth.src : eth.dst;
    std::string label;
    if (Call* c = resent ? find(originator, other, ref) : track(eth.src, originator, other, ref, d, ns)) {
      label = c->id;
      j["call"] = c->id;
      Json step = {{"t_ms", static_cast<double>(ns - c->start_ns) / 1e6}, {"from", name(eth.src)},
                   {"to", name(eth.dst)}, {"msg", type}};
      ies_json(d.msg, step);
      if (resent) step["retransmission"] = true;
      c->ladder.push_back({ns, name(eth.src), name(eth.dst),
                           (resent ? "(resent) " : "") + (words.empty() ? type : type + " " + words), step});
      if (d.msg.vci) vcis_[{mac_key(eth.src), *d.msg.vci}] = static_cast<size_t>(c - calls_.data());
    } else {
      label = ref == 0 ? "all calls" : fmt::format("call_ref {}{}", ref, to_orig ? " (to originator)" : "");
    }
    return head + type + " " + label + (words.empty() ? "" : " " + words);
  }

  Call* find(const MacAddress& originator, const MacAddress& other, uint32_t ref) {
    auto it = live_.find(Key{mac_key(originator), mac_key(other), ref});
    return it == live_.end() ? nullptr : &calls_[it->second];
  }

  // Finds or starts the call a message belongs to and notes what it did.
  Call* track(const MacAddress& sender, const MacAddress& originator, const MacAddress& other, uint32_t ref,
              const cm::Decoded& d, int64_t ns) {
    if (d.verdict == cm::Verdict::kUnknownType || ref == 0) return nullptr;
    const auto type = static_cast<cm::MsgType>(d.raw_type);
    const Key key{mac_key(originator), mac_key(other), ref};
    auto it = live_.find(key);
    const bool opens = type == cm::MsgType::kSetup || type == cm::MsgType::kAddParty;
    if (it == live_.end() && type == cm::MsgType::kAddParty) {
      // A party on another node of a point-to-multipoint call already running.
      for (const auto& [k, idx] : live_)
        if (k.originator == key.originator && k.ref == ref && calls_[idx].bearer == "p2mp") {
          it = live_.emplace(key, idx).first;
          break;
        }
    }
    if (it == live_.end() || (opens && calls_[it->second].ended)) {
      if (!opens) return nullptr;
      Call c;
      c.id = fmt::format("{}#{}", name(originator), ref);
      c.caller = name(originator);
      c.called = d.msg.called_party ? text(*d.msg.called_party) : name(other);
      c.sap = d.msg.sap ? sap_text(*d.msg.sap) : "?";
      if (d.msg.bearer == 2 || type == cm::MsgType::kAddParty) c.bearer = "p2mp";
      if (d.msg.traffic) c.traffic = d.msg.traffic->transmit;
      c.start_ns = ns;
      calls_.push_back(std::move(c));
      it = live_.insert_or_assign(key, calls_.size() - 1).first;
    }
    Call& c = calls_[it->second];
    const uint16_t party = d.msg.endpoint_ref.value_or(0);
    switch (type) {
      case cm::MsgType::kSetup:
      case cm::MsgType::kAddParty:
        if (c.bearer == "p2mp") c.live_parties.insert(party), c.all_parties.insert(party);
        break;
      case cm::MsgType::kConnect:
        if (!c.connect_ns) c.connect_ns = ns;
        break;
      case cm::MsgType::kAddPartyAck:
        ++c.parties_added;
        if (!c.connect_ns) c.connect_ns = ns;  // a leaf's view: its party is its call
        break;
      case cm::MsgType::kDropParty:
        c.dropped_by = name(sender);
        c.drop_cause = d.msg.cause ? d.msg.cause->cause : cm::cause::kNormalUnspecified;
        break;
      case cm::MsgType::kDropPartyAck:
        ++c.parties_dropped;
        // The last party on this trace's node gone: the call is over here.
        if (c.live_parties.erase(party) && c.live_parties.empty() && c.cleared_by.empty()) {
          c.cleared_by = c.dropped_by;
          c.cause = c.drop_cause;
          c.ended = true;
          c.end_ns = ns;
        }
        break;
      case cm::MsgType::kRelease:
      case cm::MsgType::kReleaseComplete:
        if (c.cleared_by.empty()) {
          c.cleared_by = name(sender);
          c.cause = d.msg.cause ? d.msg.cause->cause : cm::cause::kNormalUnspecified;
          c.refused = !c.connect_ns && type == cm::MsgType::kReleaseComplete;
        }
        if (type == cm::MsgType::kReleaseComplete) {
          c.ended = true;
          c.end_ns = ns;
        }
        break;
      default:
        break;
    }
    return &c;
  }

  std::string data(const miniport::EthHeader& eth, std::span<const uint8_t> p, Json& j) {
    if (p.size() < miniport::kDataHeaderLen) {
      j["error"] = "shorter than a DATA header";
      return "DATA truncated header";
    }
    const uint32_t vci = miniport::load_be32(p.data());
    const uint16_t len = miniport::load_be16(p.data() + 4);
    j["vci"] = vci;
    j["payload_len"] = len;
    std::string s = fmt::format("DATA vci {} len {}", vci, len);
    if (vci == 0) {
      j["error"] = "VCI 0 is never valid";
      return s + " [VCI 0: dropped]";
    }
    if (miniport::kDataHeaderLen + len > p.size()) {
      j["error"] = "len runs past the frame";
      return s + " [len runs past the frame: dropped]";
    }
    auto it = vcis_.find({mac_key(eth.dst), vci});
    if (it == vcis_.end()) return s + " [no call seen for this VCI]";
    Call& c = calls_[it->second];
    Tally& t = c.data[name(eth.src) + " -> " + name(eth.dst)];
    ++t.frames;
    t.bytes += len;
    j["call"] = c.id;
    return s + " call " + c.id;
  }

  std::string outcome(const Call& c) const {
    std::string s;
    if (c.connect_ns) s = "setup " + human_ns(static_cast<double>(*c.connect_ns - c.start_ns)) + ", ";
    if (c.refused) return s + fmt::format("refused by {}: {}", c.cleared_by, cause_text(*c.cause));
    if (!c.cleared_by.empty()) {
      s += fmt::format("cleared by {}: {}", c.cleared_by, cause_text(*c.cause));
      if (c.connect_ns && c.end_ns) s += ", " + human_ns(static_cast<double>(*c.end_ns - *c.connect_ns)) + " up";
      if (!c.ended) s += " (no RELEASE_COMPLETE in the trace)";
      return s;
    }
    return s + (c.connect_ns ? "still up at the end of the trace" : "still being set up at the end of the trace");
  }

  Json call_json(const Call& c) const {
    Json j = {{"call", c.id}, {"caller", c.caller}, {"called", c.called}, {"sap", c.sap}, {"bearer", c.bearer}};
    if (c.traffic) j["traffic"] = flowspec_json(*c.traffic);
    if (c.connect_ns) j["setup_us"] = static_cast<double>(*c.connect_ns - c.start_ns) / 1e3;
    j["outcome"] = c.refused                ? "refused"
                   : !c.cleared_by.empty()  ? "cleared"
                   : c.connect_ns           ? "up"
                                            : "setting up";
    if (!c.cleared_by.empty()) {
      j["by"] = c.cleared_by;
      j["cause"] = *c.cause;
      const char* n = cm::cause_name(*c.cause);
      j["cause_name"] = n ? n : "unknown";
    }
    Json steps = Json::array();
    for (const Step& s : c.ladder) steps.push_back(s.json);
    j["messages"] = steps;
    Json data = Json::array();
    for (const auto& [dir, t] : c.data) data.push_back({{"direction", dir}, {"frames", t.frames}, {"bytes", t.bytes}});
    j["data"] = data;
    return j;
  }

  struct Key {
    uint64_t originator, other;
    uint32_t ref;
    auto operator<=>(const Key&) const = default;
  };

  const DecodeOptions& o_;
  std::map<uint64_t, std::string> names_;
  std::optional<int64_t> first_ns_;
  std::vector<Call> calls_;
  std::map<Key, size_t> live_;
  std::map<std::pair<uint64_t, uint32_t>, size_t> vcis_;  // (receiving MAC, VCI) -> call
  std::map<std::tuple<uint64_t, uint64_t, uint32_t, uint32_t>, uint32_t> last_seq_;  // association -> seq
};

// Node names from the HELLOs in the file (a first pass, so that even the
// frames before a node's first HELLO carry its name).
std::map<uint64_t, std::string> learn_names(emulator::PcapReader& r) {
  std::map<uint64_t, std::string> names;
  while (auto f = r.next()) {
    auto eth = miniport::decode_eth(f->data);
    if (!eth || eth->ether_type != miniport::kEtherTypeSig) continue;
    auto s = cm::decode_sig(f->data.subspan(miniport::kEthHeaderLen));
    if (!s || s->hdr.kind != cm::SigKind::kHello) continue;
    if (auto h = cm::decode_hello(s->body)) names.emplace(mac_key(eth->src), text(h->node_address));
  }
  return names;
}

}  // namespace

void add_decode_command(CLI::App& app, DecodeOptions& o, CLI::App*& cmd) {
  cmd = app.add_subcommand(
      "decode",
      "Read a pcap (from coemu --pcap, tcpdump or tshark) and print one line per frame, coemu's\n"
      "signaling and DATA decoded, nodes named by their HELLOs, DATA mapped to its call.\n"
      "Examples:\n"
      "  coemu decode alpha.pcap\n"
      "  coemu decode alpha.pcap --calls          # each call's ladder with timings\n"
      "  coemu decode alpha.pcap --json | jq .    # one JSON object per frame");
  cmd->add_option("file", o.file, "The capture (pcap, Ethernet)")->required();
  cmd->add_flag("-c,--calls", o.calls,
                "Group messages per call: SETUP ... CONNECT_ACK ... RELEASE_COMPLETE with times\n"
                "from the call's first message, its data, and how it ended");
  cmd->add_flag("-j,--json", o.json, "JSON lines on stdout: one object per frame (per call with --calls)");
  cmd->add_flag("--absolute", o.absolute, "Wall-clock UTC times instead of seconds since the first frame");
}

int run_decode(const DecodeOptions& o) {
  auto first = emulator::PcapReader::open(o.file);
  if (!first) {
    fmt::print(stderr, "coemu decode: {}\n", emulator::last_error());
    return 1;
  }
  auto names = learn_names(**first);
  auto r = emulator::PcapReader::open(o.file);
  if (!r) {
    fmt::print(stderr, "coemu decode: {}\n", emulator::last_error());
    return 1;
  }
  Decoder d(o, std::move(names));
  uint64_t no = 0;
  while (auto f = (*r)->next()) d.frame(++no, *f);
  if (o.calls) d.print_calls();
  std::fflush(stdout);
  if ((*r)->failed()) {
    fmt::print(stderr, "coemu decode: stopped after frame {}: {}\n", no, emulator::last_error());
    return 1;
  }
  return 0;
}

}  // namespace tools
