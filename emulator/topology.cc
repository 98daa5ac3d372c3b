#include "emulator/topology.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "emulator/impairment.h"
#include "emulator/unique_fd.h"

namespace emulator {

namespace {

// Thrown inside parse() with the node the problem is at; turned into
// "FILE:LINE: what" and kInvalidData at the top.
struct Bad {
  YAML::Mark mark;
  std::string what;
};

[[noreturn]] void bad(const YAML::Node& at, std::string what) { throw Bad{at.Mark(), std::move(what)}; }

void only_keys(const YAML::Node& map, const std::string& where, std::initializer_list<const char*> keys) {
  for (const auto& kv : map) {
    const std::string k = kv.first.as<std::string>();
    if (std::find_if(keys.begin(), keys.end(), [&](const char* x) { return k == x; }) == keys.end()) {
      std::string list;
      for (const char* x : keys) list += std::string(list.empty() ? "" : ", ") + x;
      bad(kv.first, where + ": unknown key '" + k + "' (known: " + list + ")");
    }
  }
}

std::string scalar(const YAML::Node& n, const std::string& what) {
  if (!n.IsScalar()) bad(n, what + ": expected a single value");
  return n.as<std::string>();
}

uint32_t number(const YAML::Node& n, const std::string& what, uint32_t lo, uint32_t hi) {
  const std::string s = scalar(n, what);
  char* end = nullptr;
  const unsigned long v = std::strtoul(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || s[0] == '-' || v < lo || v > hi)
    bad(n, what + ": '" + s + "' is not a whole number within " + std::to_string(lo) + ".." + std::to_string(hi));
  return static_cast<uint32_t>(v);
}

bool boolean(const YAML::Node& n, const std::string& what) {
  const std::string s = scalar(n, what);
  if (s == "true" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "no" || s == "off") return false;
  bad(n, what + ": '" + s + "' is not true or false");
}

// {loss: 1%, delay: 20ms} (or the one-line "loss=1%,delay=20ms") -> the
// canonical spec, checked by the impairment engine's own parser.
std::string impairment(const YAML::Node& n, const std::string& what) {
  std::string spec;
  if (n.IsScalar()) {
    spec = n.as<std::string>();
  } else if (n.IsMap()) {
    for (const auto& kv : n) spec += (spec.empty() ? "" : ",") + kv.first.as<std::string>() + "=" +
                                     scalar(kv.second, what + "." + kv.first.as<std::string>());
  } else {
    bad(n, what + ": expected a map such as {loss: 1%, delay: 20ms}");
  }
  auto cfg = ImpairmentConfig::parse(spec);
  if (!cfg) bad(n, what + ": " + last_error());
  return cfg->active() ? cfg->to_string() : "";
}

// A SAP as `coemu listen --sap` takes it: 42, selector:42, service:NAME, wildcard.
bool sap_text_ok(const std::string& s) {
  auto selector = [](const std::string& v) {
    return !v.empty() && v.size() <= 5 && v.find_first_not_of("0123456789") == std::string::npos &&
           std::stoul(v) >= 1 && std::stoul(v) <= 65535;
  };
  if (s == "wildcard") return true;
  if (s.rfind("selector:", 0) == 0) return selector(s.substr(9));
  if (s.rfind("service:", 0) == 0) return s.size() > 8 && s.size() <= 8 + 64;
  return selector(s);
}

// listen: 42 | [42, service:echo] | {sap: [...], mode: echo, user: nobody}:
// `lab up` runs a `coemu listen` for the node (as `user` once set up).
void listen(const YAML::Node& n, const std::string& what, LabNodeOptions& o) {
  o.listen_mode = "accept";
  if (n.IsMap()) {
    only_keys(n, what, {"sap", "mode", "user"});
    if (!n["sap"]) bad(n, what + ": no 'sap'");
    if (n["mode"]) {
      o.listen_mode = scalar(n["mode"], what + ".mode");
      const std::string& m = o.listen_mode;
      if (m != "accept" && m != "echo" && m != "sink" && m != "reject")
        bad(n["mode"], what + ".mode '" + m + "': accept, echo, sink or reject");
    }
    // Whether the system knows the user is for `lab up` to say: a file is
    // checked where it is read, and may be meant for another machine.
    if (n["user"]) {
      o.listen_user = scalar(n["user"], what + ".user");
      if (o.listen_user.empty()) bad(n["user"], what + ".user: empty (leave it out to run as root)");
    }
  }
  // (A YAML::Node is a reference: assigning one writes into the document.)
  const YAML::Node saps = n.IsMap() ? n["sap"] : n;
  std::vector<YAML::Node> items;
  if (saps.IsSequence()) {
    for (const auto& x : saps) items.push_back(x);
  } else {
    items.push_back(saps);
  }
  for (const auto& x : items) {
    const std::string sap = scalar(x, what);
    if (!sap_text_ok(sap)) bad(x, what + ": SAP '" + sap + "': 1-65535, selector:N, service:NAME or wildcard");
    o.listen.push_back(sap);
  }
  if (o.listen.empty()) bad(n, what + ": no SAP");
}

Topology parse_doc(const YAML::Node& doc) {
  Topology t;
  if (!doc.IsMap()) bad(doc, "expected a map with name, nodes and links");
  only_keys(doc, "lab", {"name", "mtu", "capture_dir", "nodes", "links"});
  if (!doc["name"]) bad(doc, "no 'name' (the lab's name, 1..6 of a-z 0-9)");
  t.lab.name = scalar(doc["name"], "name");
  if (doc["mtu"]) t.lab.mtu = number(doc["mtu"], "mtu", 68, 65521);
  if (doc["capture_dir"]) t.capture_dir = scalar(doc["capture_dir"], "capture_dir");

  const YAML::Node nodes = doc["nodes"];
  if (!nodes || !nodes.IsMap() || nodes.size() == 0) bad(nodes ? nodes : doc, "'nodes' must map node names to settings");
  std::map<std::string, YAML::Node> where;  // node name -> its entry, for messages
  for (const auto& kv : nodes) {
    const std::string name = kv.first.as<std::string>();
    const std::string what = "node " + name;
    LabNodeOptions o;
    bool capture = false;
    const YAML::Node& v = kv.second;
    if (v && !v.IsNull()) {
      if (!v.IsMap()) bad(v, what + ": expected a map of settings ({} for none)");
      only_keys(v, what, {"address", "mtu", "queues", "capture", "impair", "listen"});
      if (v["address"]) o.address = scalar(v["address"], what + ".address");
      if (v["mtu"]) o.mtu = number(v["mtu"], what + ".mtu", 68, 65521);
      if (v["queues"]) o.queues = number(v["queues"], what + ".queues", 1, 16);
      if (v["capture"]) capture = boolean(v["capture"], what + ".capture");
      if (v["impair"]) o.impair = impairment(v["impair"], what + ".impair");
      if (v["listen"]) listen(v["listen"], what + ".listen", o);
    }
    if (!o.address.empty()) {
      const bool ok = o.address.size() <= 32 && std::all_of(o.address.begin(), o.address.end(), [](char c) {
                        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
                      });
      if (!ok) bad(v["address"], what + ".address '" + o.address + "': 1..32 of A-Z a-z 0-9 . _ -");
    }
    if (capture) o.pcap = (std::filesystem::path(t.capture_dir) / (t.lab.name + "-" + name + ".pcap")).string();
    if (where.count(name)) bad(kv.first, what + " is listed twice");
    where[name] = kv.first;
    t.lab.nodes.push_back(name);
    t.lab.node_options.push_back(o);
  }

  std::map<std::string, std::vector<std::string>> link_impair;  // node -> impairments of its links
  std::map<std::string, int> degree;
  if (const YAML::Node links = doc["links"]) {
    if (!links.IsSequence()) bad(links, "'links' must be a list such as [alpha-beta]");
    for (const auto& l : links) {
      std::vector<std::pair<std::string, std::string>> pairs;
      std::string imp;
      if (l.IsScalar()) {
        const std::string s = l.as<std::string>();
        const auto dash = s.find('-');
        if (dash == std::string::npos || dash == 0 || dash + 1 == s.size())
          bad(l, "link '" + s + "': expected NODE-NODE, {between: [NODE, NODE]} or {segment: [NODE, ...]}");
        pairs.emplace_back(s.substr(0, dash), s.substr(dash + 1));
      } else if (l.IsMap() && l["segment"]) {
        // One Ethernet segment: the first node's bridge joins each other's.
        only_keys(l, "segment", {"segment"});
        const YAML::Node ends = l["segment"];
        if (!ends.IsSequence() || ends.size() < 2) bad(l, "segment: name two or more nodes");
        for (size_t i = 1; i < ends.size(); ++i)
          pairs.emplace_back(scalar(ends[0], "segment"), scalar(ends[i], "segment"));
      } else if (l.IsMap()) {
        only_keys(l, "link", {"between", "impair"});
        const YAML::Node ends = l["between"];
        if (!ends || !ends.IsSequence() || ends.size() != 2) bad(l, "link: 'between' must name two nodes");
        pairs.emplace_back(scalar(ends[0], "link"), scalar(ends[1], "link"));
        if (l["impair"]) imp = impairment(l["impair"], "link " + pairs[0].first + "-" + pairs[0].second + ".impair");
      } else {
        bad(l, "link: expected NODE-NODE, {between: [NODE, NODE], impair: {...}} or {segment: [NODE, ...]}");
      }
      for (const auto& [a, b] : pairs) {
        for (const auto& end : {a, b})
          if (!where.count(end)) bad(l, "link " + a + "-" + b + ": no node '" + end + "' in 'nodes'");
        t.lab.links.emplace_back(a, b);
        ++degree[a], ++degree[b];
        if (!imp.empty()) {
          // The two directions draw from different seeds (the link's and the
          // next), or frame k would share its fate both ways.
          auto cfg = *ImpairmentConfig::parse(imp);
          link_impair[a].push_back(cfg.to_string());
          ++cfg.seed;
          link_impair[b].push_back(cfg.to_string());
        }
      }
    }
  }
  // The sending node does the impairing (see topology.h).
  for (size_t i = 0; i < t.lab.nodes.size(); ++i) {
    const std::string& n = t.lab.nodes[i];
    auto& o = t.lab.node_options[i];
    auto it = link_impair.find(n);
    if (it == link_impair.end() || !o.impair.empty()) continue;
    if (degree[n] > 1)
      bad(where[n], "node " + n + " has " + std::to_string(degree[n]) +
                        " links and one is impaired: coemu impairs in the sending node, on everything it sends, "
                        "so say it on the node (nodes." + n + ".impair)");
    o.impair = it->second.front();
  }
  return t;
}

}  // namespace

Result<Topology> Topology::parse(std::string_view yaml, const std::string& origin) {
  try {
    Topology t = parse_doc(YAML::Load(std::string(yaml)));
    if (auto v = Lab::validate(t.lab); !v) {
      set_last_error(origin + ": " + last_error());
      return miniport::fail(Status::kInvalidData);
    }
    return t;
  } catch (const Bad& b) {
    set_last_error(origin + ":" + std::to_string(b.mark.line + 1) + ": " + b.what);
  } catch (const YAML::Exception& e) {
    set_last_error(origin + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return miniport::fail(Status::kInvalidData);
}

Result<Topology> Topology::load(const std::string& path) {
  std::ifstream f(path);
  if (!f) return miniport::fail(record_errno("cannot read " + path, errno));
  std::stringstream text;
  text << f.rdbuf();
  auto t = COEMU_TRY(parse(text.str(), path));
  // Captures land where the file says, relative to where the lab was made.
  std::error_code ec;
  const auto dir = std::filesystem::absolute(t.capture_dir, ec);
  if (!ec) {
    t.capture_dir = dir.lexically_normal().string();
    for (size_t i = 0; i < t.lab.nodes.size(); ++i)
      if (!t.lab.node_options[i].pcap.empty())
        t.lab.node_options[i].pcap = (dir / (t.lab.name + "-" + t.lab.nodes[i] + ".pcap")).lexically_normal().string();
  }
  return t;
}

}  // namespace emulator
