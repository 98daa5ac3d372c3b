#include "emulator/lab.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "emulator/daemon.h"
#include "emulator/route_netlink.h"
#include "emulator/tap_device.h"

namespace emulator {

namespace fs = std::filesystem;

namespace {

miniport::Unexpected invalid(std::string msg) {
  set_last_error(std::move(msg));
  return miniport::fail(Status::kInvalidData);
}

bool is_word(std::string_view s, size_t max) {
  return !s.empty() && s.size() <= max &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); });
}

std::string prefix(std::string_view lab) { return "coe-" + std::string(lab) + "-"; }

std::string state_path(const LabOptions& o, std::string_view lab) {
  return o.state_dir + "/" + std::string(lab) + ".json";
}

// Writes the file next to its final name and renames it, so a crash leaves
// either the old state or the new one, never half of one.
Result<void> write_state(const std::string& path, const nlohmann::json& j) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) {
    set_last_error("create " + fs::path(path).parent_path().string() + ": " + ec.message());
    return miniport::fail(Status::kFailure);
  }
  const std::string tmp = path + ".tmp";
  const std::string text = j.dump(2) + "\n";
  auto fd = COEMU_TRY(UniqueFd::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) || ::fsync(fd.get()) != 0)
    return miniport::fail(record_errno("write " + tmp, errno));
  if (::rename(tmp.c_str(), path.c_str()) != 0) return miniport::fail(record_errno("rename " + tmp, errno));
  return {};
}

}  // namespace

void to_json(nlohmann::json& j, const LabNode& n) {
  j = nlohmann::json{{"name", n.name},
                     {"netns", n.netns},
                     {"bridge", n.bridge},
                     {"tap", n.tap},
                     {"address", n.options.address},
                     {"mtu", n.options.mtu},
                     {"queues", n.options.queues},
                     {"impair", n.options.impair},
                     {"pcap", n.options.pcap},
                     {"listen", n.options.listen},
                     {"listen_mode", n.options.listen_mode},
                     {"listen_user", n.options.listen_user}};
}

Result<void> Lab::validate(const LabSpec& s) {
  if (!is_word(s.name, 6)) return invalid("lab name '" + s.name + "': use 1..6 characters a-z, 0-9");
  if (s.nodes.empty()) return invalid("lab " + s.name + ": no nodes");
  if (s.nodes.size() > 99) return invalid("lab " + s.name + ": at most 99 nodes");
  if (s.mtu < 68 || s.mtu > 65535) return invalid("lab MTU " + std::to_string(s.mtu) + ": must be within 68..65535");
  if (!s.node_options.empty() && s.node_options.size() != s.nodes.size())
    return invalid("lab " + s.name + ": node options for " + std::to_string(s.node_options.size()) + " of " +
                   std::to_string(s.nodes.size()) + " nodes");
  for (size_t i = 0; i < s.node_options.size(); ++i) {
    const auto& o = s.node_options[i];
    if (o.mtu != 0 && (o.mtu < 68 || o.mtu > 65521))
      return invalid("node " + s.nodes[i] + ": MTU " + std::to_string(o.mtu) + " must be within 68..65521");
    if (o.queues < 1 || o.queues > 16)
      return invalid("node " + s.nodes[i] + ": " + std::to_string(o.queues) + " queues; a TAP has 1..16");
  }
  std::set<std::string> seen;
  for (const auto& n : s.nodes) {
    if (!is_word(n, 16)) return invalid("node name '" + n + "': use 1..16 characters a-z, 0-9");
    if (!seen.insert(n).second) return invalid("node '" + n + "' is listed twice");
  }
  auto index = [&](const std::string& n) -> int {
    auto it = std::find(s.nodes.begin(), s.nodes.end(), n);
    return it == s.nodes.end() ? -1 : static_cast<int>(it - s.nodes.begin());
  };
  std::vector<int> parent(s.nodes.size());
  std::iota(parent.begin(), parent.end(), 0);
  auto root = [&](int i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
  };
  for (const auto& [a, b] : s.links) {
    const std::string label = "link " + a + "-" + b;
    int ia = index(a), ib = index(b);
    if (ia < 0) return invalid(label + ": no node '" + a + "'");
    if (ib < 0) return invalid(label + ": no node '" + b + "'");
    if (ia == ib) return invalid(label + ": a node cannot link to itself");
    int ra = root(ia), rb = root(ib);
    if (ra == rb)
      return invalid(label + ": closes a loop (or repeats a link); lab bridges run no STP, so links must not form loops");
    parent[ra] = rb;
  }
  return {};
}

Result<void> Lab::step(const char* what) {
  if (steps_++ == opts_.fail_at_step) {
    set_last_error(std::string("injected failure at step ") + std::to_string(steps_ - 1) + " (" + what + ")");
    return miniport::fail(Status::kFailure);
  }
  return {};
}

Result<void> Lab::check_privileges() {
  // Probe by doing: the tun node may be 0600 and user namespaces may grant
  // capabilities without uid 0, so neither geteuid() nor the mode decides.
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    record_errno("a lab needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN): cannot open /dev/net/tun", errno);
    return miniport::fail(Status::kFailure);
  }
  ::close(fd);
  if (::access("/run", W_OK) != 0) {
    record_errno("a lab needs root (CAP_SYS_ADMIN): cannot write /run for /run/netns", errno);
    return miniport::fail(Status::kFailure);
  }
  return {};
}

Result<std::unique_ptr<Lab>> Lab::up(const LabSpec& spec, const LabOptions& opts) {
  COEMU_TRY(validate(spec));
  COEMU_TRY(check_privileges());
  const std::string pre = prefix(spec.name);
  for (const auto& n : Netns::list()) {
    if (n.starts_with(pre)) {
      set_last_error("lab '" + spec.name + "' is already up (namespace " + n + "); run: coemu lab down " +
                     spec.name);
      return miniport::fail(Status::kNotAccepted);
    }
  }
  std::unique_ptr<Lab> lab(new Lab(spec, opts));
  for (size_t i = 0; i < spec.nodes.size(); ++i) {
    const std::string base = "coe" + spec.name;
    LabNodeOptions o = spec.node_options.empty() ? LabNodeOptions{} : spec.node_options[i];
    if (o.address.empty()) o.address = spec.nodes[i];
    if (o.mtu == 0) o.mtu = spec.mtu;
    lab->nodes_.push_back(LabNode{spec.nodes[i], pre + spec.nodes[i], base + "b" + std::to_string(i),
                                  base + "t" + std::to_string(i), o});
  }
  if (auto r = lab->build(); !r) {
    const std::string why = last_error();
    (void)lab->down();  // roll back whatever was made; keep the first error's text
    set_last_error(why);
    return miniport::fail(r.error());
  }
  return lab;
}

Result<void> Lab::build() {
  // The state file first: whatever happens next, `down` can find it.
  nlohmann::json j;
  j["lab"] = spec_.name;
  j["pid"] = ::getpid();
  j["netns"] = nlohmann::json::array();
  j["nodes"] = nlohmann::json::array();
  for (const auto& n : nodes_) {
    j["netns"].push_back(n.netns);
    j["nodes"].push_back(n);
  }
  j["daemons"] = nlohmann::json::array();
  // Bridges and veths carry the largest frames any node sends.
  uint32_t wire_mtu = spec_.mtu;
  for (const auto& n : nodes_) wire_mtu = std::max(wire_mtu, n.options.mtu);
  j["links"] = nlohmann::json::array();
  for (const auto& [a, b] : spec_.links) j["links"].push_back({a, b});
  j["mtu"] = spec_.mtu;
  COEMU_TRY(write_state(state_file(), j));

  std::vector<Netns> ns;
  for (const auto& n : nodes_) {
    COEMU_TRY(step("create namespace"));
    ns.push_back(COEMU_TRY(Netns::create(n.netns)));
    auto nl = COEMU_TRY(RouteNetlink::open_in(ns.back()));
    COEMU_TRY(nl.set_up("lo", true));
    COEMU_TRY(step("add bridge"));
    COEMU_TRY(nl.add_bridge(n.bridge));
    COEMU_TRY(nl.set_mtu(n.bridge, wire_mtu));
    COEMU_TRY(nl.set_up(n.bridge, true));
    COEMU_TRY(step("add TAP"));
    {
      TapOptions t;
      t.name = n.tap;
      t.netns = &ns.back();
      t.persist = true;
      t.queues = n.options.queues;  // a multi-queue TAP is one from its creation
      t.io = TapIo::kWrite;  // nothing is sent through this fd
      // The fd closes at the end of this block; the device stays (persistent)
      // for the node that attaches to it.
      auto tap = COEMU_TRY(TapDevice::open(t));
    }
    COEMU_TRY(nl.set_mtu(n.tap, n.options.mtu));
    COEMU_TRY(nl.enslave(n.bridge, n.tap));
    COEMU_TRY(nl.set_up(n.tap, true));
  }
  auto idx = [&](const std::string& name) {
    return static_cast<size_t>(std::find(spec_.nodes.begin(), spec_.nodes.end(), name) - spec_.nodes.begin());
  };
  for (const auto& [a, b] : spec_.links) {
    const size_t ia = idx(a), ib = idx(b);
    const std::string base = "coe" + spec_.name + "v";
    const std::string va = base + std::to_string(ia) + "-" + std::to_string(ib);
    const std::string vb = base + std::to_string(ib) + "-" + std::to_string(ia);
    auto nla = COEMU_TRY(RouteNetlink::open_in(ns[ia]));
    auto nlb = COEMU_TRY(RouteNetlink::open_in(ns[ib]));
    COEMU_TRY(step("add veth"));
    // One request makes both ends, each inside its node's namespace: no
    // moment exists where a half-made pair sits in the caller's namespace.
    COEMU_TRY(nla.add_veth(va, vb, &ns[ib]));
    for (auto [nl, dev, br] : {std::tuple{&nla, va, nodes_[ia].bridge}, std::tuple{&nlb, vb, nodes_[ib].bridge}}) {
      COEMU_TRY(nl->set_mtu(dev, wire_mtu));
      COEMU_TRY(nl->enslave(br, dev));
      COEMU_TRY(nl->set_up(dev, true));
    }
  }
  return {};
}

Result<void> Lab::down() {
  if (down_) return {};
  COEMU_TRY(down(spec_.name, opts_));
  down_ = true;
  return {};
}

Lab::~Lab() {
  if (!released_ && !down_) (void)down();
}

Result<void> Lab::down(std::string_view lab_name, const LabOptions& opts) {
  if (!is_word(lab_name, 6)) return invalid("lab name '" + std::string(lab_name) + "': use 1..6 characters a-z, 0-9");
  std::set<std::string> names;
  const std::string path = state_path(opts, lab_name);
  if (std::ifstream f(path); f) {
    auto j = nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("netns") && j["netns"].is_array()) {
      for (const auto& n : j["netns"])
        if (n.is_string() && n.get<std::string>().starts_with(prefix(lab_name))) names.insert(n.get<std::string>());
    }
    // The nodes' processes first: they close their calls and flush their captures.
    if (j.is_object() && j.contains("daemons") && j["daemons"].is_array()) {
      for (const auto& d : j["daemons"]) {
        if (!d.is_object() || !d.contains("pid") || !d["pid"].is_number_integer() || !d.contains("node")) continue;
        stop_daemon(d["pid"].get<int>(), {"listen", "--lab", std::string(lab_name), d["node"].get<std::string>()},
                    std::chrono::seconds(5));
      }
    }
  }
  for (const auto& n : Netns::list())
    if (n.starts_with(prefix(lab_name))) names.insert(n);
  // Everything a lab makes lives inside its namespaces: dropping the names
  // lets the kernel delete the bridges, TAPs and veths with them.
  Result<void> first_error = {};
  for (const auto& n : names) {
    if (auto r = Netns::remove(n); !r && first_error) first_error = r;
  }
  if (!first_error) return first_error;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return miniport::fail(record_errno("remove " + path, errno));
  // The nodes' control sockets (see tools/show.h), gone with their nodes.
  std::error_code ec;
  fs::remove_all(fs::path(opts.state_dir) / std::string(lab_name), ec);
  return {};
}

std::vector<std::string> Lab::list(const LabOptions& opts) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(opts.state_dir, ec)) {
    if (e.path().extension() == ".json") out.push_back(e.path().stem().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<LabState> Lab::read(std::string_view lab_name, const LabOptions& opts) {
  if (!is_word(lab_name, 6)) return invalid("lab name '" + std::string(lab_name) + "': use 1..6 characters a-z, 0-9");
  const std::string path = state_path(opts, lab_name);
  std::ifstream f(path);
  if (!f) {
    set_last_error("no lab '" + std::string(lab_name) + "' is up (no " + path + "); see: coemu lab status");
    return miniport::fail(Status::kFailure);
  }
  auto j = nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false);
  LabState st;
  st.name = std::string(lab_name);
  if (!j.is_object() || !j.contains("nodes") || !j["nodes"].is_array()) return invalid(path + ": damaged state file");
  try {
    st.mtu = j.value("mtu", 1500u);
    if (j.contains("daemons"))
      for (const auto& d : j["daemons"]) st.daemons.emplace_back(d.at("node").get<std::string>(), d.at("pid").get<int>());
    if (j.contains("links"))
      for (const auto& l : j["links"]) st.links.emplace_back(l.at(0).get<std::string>(), l.at(1).get<std::string>());
  } catch (const nlohmann::json::exception& e) {
    return invalid(path + ": damaged state file (" + e.what() + ")");
  }
  for (const auto& n : j["nodes"]) try {
    if (!n.is_object()) return invalid(path + ": damaged state file");
    LabNode node;
    node.name = n.value("name", "");
    node.netns = n.value("netns", "");
    node.bridge = n.value("bridge", "");
    node.tap = n.value("tap", "");
    node.options.address = n.value("address", node.name);
    node.options.mtu = n.value("mtu", j.value("mtu", 1500u));
    node.options.queues = n.value("queues", 1u);
    node.options.impair = n.value("impair", "");
    node.options.pcap = n.value("pcap", "");
    node.options.listen = n.value("listen", std::vector<std::string>{});
    node.options.listen_mode = n.value("listen_mode", "");
    node.options.listen_user = n.value("listen_user", "");
    if (node.name.empty() || node.netns.empty() || node.tap.empty()) return invalid(path + ": damaged state file");
    st.nodes.push_back(std::move(node));
  } catch (const nlohmann::json::exception& e) {
    return invalid(path + ": damaged state file (" + e.what() + ")");
  }
  return st;
}

Result<void> Lab::add_daemon(std::string_view lab_name, const std::string& node, int pid, const LabOptions& opts) {
  const std::string path = state_path(opts, lab_name);
  std::ifstream f(path);
  auto j = f ? nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false) : nlohmann::json();
  if (!j.is_object()) return invalid(path + ": no state file to add a process to");
  if (!j.contains("daemons") || !j["daemons"].is_array()) j["daemons"] = nlohmann::json::array();
  j["daemons"].push_back({{"node", node}, {"pid", pid}});
  return write_state(path, j);
}

std::string Lab::run_dir(std::string_view lab_name, const LabOptions& opts) {
  return (fs::path(opts.state_dir) / std::string(lab_name)).string();
}

const LabNode* LabState::node(std::string_view name) const noexcept {
  for (const auto& n : nodes)
    if (n.name == name) return &n;
  return nullptr;
}

const LabNode* Lab::node(std::string_view name) const noexcept {
  for (const auto& n : nodes_)
    if (n.name == name) return &n;
  return nullptr;
}

std::string Lab::state_file() const { return state_path(opts_, spec_.name); }

}  // namespace emulator
