#include "tools/demo.h"

#include <fmt/core.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "emulator/clock.h"
#include "emulator/data_path.h"
#include "emulator/lab.h"
#include "emulator/mem_link.h"
#include "emulator/pcap_recorder.h"
#include "emulator/signals.h"
#include "emulator/tap_device.h"
#include "miniport/byte_order.h"
#include "miniport/mac_address.h"

namespace tools {

namespace {

using emulator::Link;
using emulator::RxFrame;
using miniport::MacAddress;

constexpr uint16_t kEtherData = 0x88B6;
constexpr size_t kEth = 14, kDataHdr = 8;

// A DATA frame (PROTOCOL.md section 2): vci, len, flags, then the payload,
// which here is the sequence number and a pattern derived from it.
std::vector<uint8_t> data_frame(const MacAddress& dst, const MacAddress& src, uint32_t vci, uint32_t seq,
                                size_t payload) {
  std::vector<uint8_t> f(kEth + kDataHdr + payload);
  std::copy(dst.bytes.begin(), dst.bytes.end(), f.begin());
  std::copy(src.bytes.begin(), src.bytes.end(), f.begin() + 6);
  miniport::store_be16(&f[12], kEtherData);
  miniport::store_be32(&f[14], vci);
  miniport::store_be16(&f[18], static_cast<uint16_t>(payload));
  miniport::store_be16(&f[20], 0);
  miniport::store_be32(&f[22], seq);
  for (size_t i = 26; i < f.size(); ++i) f[i] = static_cast<uint8_t>(seq + i);
  return f;
}

// Checks a received frame; returns its seq or nullopt if it is not an intact
// DATA frame for vci (other traffic, e.g. IPv6 router solicitations, is skipped).
std::optional<uint32_t> check(std::span<const uint8_t> f, uint32_t vci) {
  if (f.size() < kEth + kDataHdr + 4 || miniport::load_be16(&f[12]) != kEtherData) return std::nullopt;
  if (miniport::load_be32(&f[14]) != vci) return std::nullopt;
  const size_t len = miniport::load_be16(&f[18]);
  if (kEth + kDataHdr + len > f.size() || len < 4) return std::nullopt;
  const uint32_t seq = miniport::load_be32(&f[22]);
  for (size_t i = 26; i < kEth + kDataHdr + len; ++i)
    if (f[i] != static_cast<uint8_t>(seq + i)) return std::nullopt;
  return seq;
}

struct Stats {
  uint64_t sent = 0, received = 0, bytes = 0, corrupt_or_foreign = 0;
};

// A node's VC owner: checks every payload, in order, and counts.
class Owner : public emulator::DataPathHandler {
 public:
  void on_receive(std::span<emulator::RxPacket> pkts) override {
    for (auto& p : pkts) {
      auto d = p.payload();
      const uint32_t want = next.load(std::memory_order_relaxed);
      bool ok = d.size() >= 4 && miniport::load_be32(d.data()) == want;
      for (size_t i = 4; ok && i < d.size(); ++i) ok = d[i] == static_cast<uint8_t>(want + i);
      if (ok) {
        bytes.fetch_add(d.size(), std::memory_order_relaxed);
        next.store(want + 1, std::memory_order_release);
      } else {
        bad.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  void on_send_complete(std::span<const emulator::TxCompletion> done) override {
    for (const auto& c : done) (c.status == miniport::Status::kSuccess ? sent_ok : sent_failed).fetch_add(1);
  }
  std::atomic<uint32_t> next{0};
  std::atomic<uint64_t> bytes{0}, bad{0}, sent_ok{0}, sent_failed{0};
};

struct Exchange {
  Stats ab, ba;
  double seconds = 0;
  bool interrupted = false;
  bool timed_out = false;
  bool engine_failed = false;
};

// Both nodes run the real stack: a miniport, a data path (I/O thread) and a
// PVC (labels 1 at b, 2 at a). Each direction sends `frames` payloads in
// windows (a TAP never pushes back and a full queue drops silently, so a
// sender waits for its peer to catch up) and every byte is checked in order.
Exchange exchange(Link& a, Link& b, uint32_t frames) {
  const auto ma = MacAddress::local(0xa), mb = MacAddress::local(0xb);
  Exchange ex;
  miniport::Miniport mpa({.mac = ma, .mtu = a.mtu()}), mpb({.mac = mb, .mtu = b.mtu()});
  const miniport::VcId va = *mpa.vcs().create(1), vb = *mpb.vcs().create(2);
  (void)mpa.vcs().activate(va, {.peer = mb, .tx_vci = 1, .pvc_rx_vci = 2});
  (void)mpb.vcs().activate(vb, {.peer = ma, .tx_vci = 2, .pvc_rx_vci = 1});
  Owner oa, ob;
  auto da = emulator::DataPath::start(a, mpa, oa, {});
  auto db = emulator::DataPath::start(b, mpb, ob, {});
  if (!da || !db) {
    ex.engine_failed = true;
    return ex;
  }
  const size_t max_payload = std::min((*da)->max_payload(), (*db)->max_payload());
  auto send_one = [&](emulator::DataPath& dp, miniport::VcId vc, uint32_t seq, size_t len) {
    emulator::TxPacket p{dp.alloc(), seq};
    if (!p.buf) return false;
    uint8_t* d = p.buf.data() + miniport::kFramePayloadOffset;
    miniport::store_be32(d, seq);
    for (size_t i = 4; i < len; ++i) d[i] = static_cast<uint8_t>(seq + i);
    p.buf.set_size(static_cast<uint32_t>(len));
    return dp.send(vc, std::span(&p, 1)) == 1;
  };
  const auto t0 = emulator::steady_now();
  constexpr uint32_t kWindow = 64;
  for (uint32_t base = 0; base < frames && !ex.interrupted && !ex.timed_out; base += kWindow) {
    const uint32_t end = std::min(frames, base + kWindow);
    const auto deadline = emulator::steady_now() + std::chrono::seconds(5);
    for (uint32_t s = base; s < end; ++s) {
      const size_t len = 4 + (s * 97) % (max_payload - 4 + 1);
      // Back-pressure (ring or pool full) means "later", never "drop".
      while (!send_one(**da, va, s, len) && emulator::steady_now() < deadline) std::this_thread::yield();
      while (!send_one(**db, vb, s, max_payload + 4 - len) && emulator::steady_now() < deadline)
        std::this_thread::yield();
      ex.ab.sent++;
      ex.ba.sent++;
    }
    while ((ob.next.load() < end || oa.next.load() < end) && !ex.interrupted) {
      if (emulator::steady_now() > deadline) {
        ex.timed_out = true;
        break;
      }
      std::this_thread::yield();
      ex.interrupted = emulator::ShutdownSignals::requested();
    }
  }
  ex.seconds = std::chrono::duration<double>(emulator::steady_now() - t0).count();
  da->reset();
  db->reset();
  ex.ab.received = ob.next.load();
  ex.ab.bytes = ob.bytes.load();
  ex.ab.corrupt_or_foreign = ob.bad.load();
  ex.ba.received = oa.next.load();
  ex.ba.bytes = oa.bytes.load();
  ex.ba.corrupt_or_foreign = oa.bad.load();
  return ex;
}

// Waits until a frame crosses a -> b (a new lab's veths take a moment to get
// carrier). Probes use seq 0xffffffff, which the exchange never sends.
bool wait_path(Link& a, Link& b) {
  auto probe = data_frame(MacAddress::local(0xb), MacAddress::local(0xa), 1, 0xffffffff, 64);
  std::span<const uint8_t> ps(probe);
  std::vector<uint8_t> buf(b.mtu() + kEth);
  const auto deadline = emulator::steady_now() + std::chrono::seconds(10);
  while (emulator::steady_now() < deadline && !emulator::ShutdownSignals::requested()) {
    (void)a.send_burst(std::span(&ps, 1));
    (void)b.wait_readable(std::chrono::milliseconds(50));
    RxFrame slot{{buf.data(), buf.size()}};
    while (b.recv_burst(std::span(&slot, 1)).value_or(0) == 1) {
      if (check({buf.data(), slot.len}, 1) == 0xffffffffu) return true;
    }
  }
  return false;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
  return s;
}

}  // namespace

int run_demo(const DemoOptions& opts) {
  emulator::ShutdownSignals::install();
  emulator::ShutdownSignals::set_graceful(true);  // Ctrl-C: stop, tear down, report

  std::unique_ptr<emulator::Lab> lab;
  std::unique_ptr<Link> a, b;
  std::string mode = "memory";
  std::string why_memory = opts.force_memory ? "--memory given" : "";
  if (!opts.force_memory) {
    emulator::LabSpec spec{.name = "d" + std::to_string(::getpid() % 100000), .nodes = {"a", "b"},
                           .links = {{"a", "b"}}};
    auto up = emulator::Lab::up(spec);
    if (!up) {
      why_memory = "namespace lab unavailable: " + emulator::last_error();
    } else {
      lab = std::move(*up);
      std::vector<std::unique_ptr<Link>> taps;
      for (const char* n : {"a", "b"}) {
        auto ns = emulator::Netns::open(lab->node(n)->netns);
        if (!ns) break;
        auto t = emulator::TapDevice::open({.name = lab->node(n)->tap, .netns = &*ns, .attach = true});
        if (!t) break;
        taps.push_back(std::move(*t));
      }
      if (taps.size() != 2) {
        why_memory = "cannot attach to the lab's TAPs: " + emulator::last_error();
        (void)lab->down();
        lab.reset();
      } else {
        a = std::move(taps[0]);
        b = std::move(taps[1]);
        mode = "netns";
        fmt::print(stderr, "demo: lab {} up: namespaces {} and {}, TAPs {} and {}, joined by a veth pair\n",
                   lab->name(), lab->node("a")->netns, lab->node("b")->netns, lab->node("a")->tap,
                   lab->node("b")->tap);
      }
    }
  }
  if (!a) {
    auto pair = emulator::MemLink::make_pair({});
    if (!pair) {
      fmt::print(stderr, "demo: cannot make a memory wire: {}\n", emulator::last_error());
      return 1;
    }
    a = std::move(pair->first);
    b = std::move(pair->second);
    fmt::print(stderr, "demo: using the in-process memory wire ({})\n", why_memory);
  }

  auto rec = emulator::PcapRecorder::open({.path = opts.pcap});
  if (!rec) {
    fmt::print(stderr, "demo: cannot record to {}: {}\n", opts.pcap, emulator::last_error());
    a.reset();
    b.reset();
    if (lab) (void)lab->down();
    return 1;
  }
  a->set_recorder(rec->get());

  bool ok = true;
  std::string problem;
  Exchange ex;
  if (!wait_path(*a, *b)) {
    ok = false;
    problem = "no frame crossed the lab within 10 s";
  } else {
    fmt::print(stderr, "demo: path a->b ready; sending {} frames each way\n", opts.frames);
    ex = exchange(*a, *b, opts.frames);
    if (ex.engine_failed) problem = "the data path did not start: " + emulator::last_error();
    else if (ex.interrupted) problem = "interrupted";
    else if (ex.timed_out) problem = "frames stopped arriving (timed out after 5 s)";
    ok = !ex.interrupted && !ex.timed_out && ex.ab.received == opts.frames && ex.ba.received == opts.frames;
  }
  a->set_recorder(nullptr);
  (*rec)->sync();
  const auto pc = (*rec)->counters();
  rec->reset();
  a.reset();
  b.reset();

  std::vector<std::string> left;
  if (lab) {
    const std::string prefix = "coe-" + lab->name() + "-";
    if (auto r = lab->down(); !r) {
      ok = false;
      problem = "teardown failed: " + emulator::last_error();
    }
    for (const auto& n : emulator::Netns::list())
      if (n.starts_with(prefix)) left.push_back(n);
    if (!left.empty()) ok = false;
  }

  const double mbps_ab = ex.seconds > 0 ? ex.ab.bytes * 8 / ex.seconds / 1e6 : 0;
  const double mbps_ba = ex.seconds > 0 ? ex.ba.bytes * 8 / ex.seconds / 1e6 : 0;
  if (opts.json) {
    nlohmann::ordered_json j;
    j["ok"] = ok;
    j["mode"] = mode;
    if (mode == "memory") j["why_memory"] = why_memory;
    j["frames_each_way"] = opts.frames;
    j["a_to_b"] = {{"sent", ex.ab.sent}, {"received_intact", ex.ab.received}, {"bytes", ex.ab.bytes}};
    j["b_to_a"] = {{"sent", ex.ba.sent}, {"received_intact", ex.ba.received}, {"bytes", ex.ba.bytes}};
    j["seconds"] = ex.seconds;
    j["pcap"] = {{"path", opts.pcap}, {"frames", pc.written}, {"dropped", pc.dropped}};
    j["left_behind"] = left;
    if (!problem.empty()) j["problem"] = problem;
    fmt::print("{}\n", j.dump());
  } else {
    fmt::print("coemu demo summary\n");
    fmt::print("  mode        {}\n", mode == "netns" ? "network-namespace lab (2 namespaces, 2 TAPs, bridges, veth)"
                                                      : "in-process memory wire (" + why_memory + ")");
    fmt::print("  stack       miniport + data path on each node, a PVC (VCI 1 at b, 2 at a)\n");
    fmt::print("  a -> b      {} sent, {} received intact, {:.1f} Mbit/s\n", ex.ab.sent, ex.ab.received, mbps_ab);
    fmt::print("  b -> a      {} sent, {} received intact, {:.1f} Mbit/s\n", ex.ba.sent, ex.ba.received, mbps_ba);
    fmt::print("  duration    {:.3f} s\n", ex.seconds);
    fmt::print("  pcap        {} ({} frames of node a, {} not recorded); try: tcpdump -nn -e -r {}\n", opts.pcap,
               pc.written, pc.dropped, opts.pcap);
    if (mode == "netns")
      fmt::print("  cleanup     {}\n", left.empty() ? "lab removed, no namespace or device left behind"
                                                    : "LEFT BEHIND: " + join(left));
    fmt::print("  result      {}\n", ok ? "OK" : "FAILED: " + problem);
  }
  return ok ? 0 : 1;
}

}  // namespace tools
