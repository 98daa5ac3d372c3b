#include "tools/bench_datapath.h"

#include <arpa/inet.h>
#include <fmt/core.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <optional>
#include <atomic>
#include <cmath>
#include <thread>

#include "emulator/clock.h"
#include "emulator/data_path.h"
#include "emulator/mem_link.h"
#include "emulator/netns.h"
#include "emulator/route_netlink.h"
#include "emulator/tap_device.h"

namespace tools {

miniport::Result<BenchPath> make_bench_path(const std::string& kind, uint32_t mtu) {
  BenchPath p;
  if (kind == "memory") {
    auto pair = emulator::MemLink::make_pair({.mtu = mtu, .capacity = 4096, .bytes = 64u << 20});
    if (!pair) return miniport::fail(pair.error());
    p.a = std::move(pair->first);
    p.b = std::move(pair->second);
    return p;
  }
  auto ns = emulator::Netns::create_anonymous();
  // (The raw baseline writes with write(2) on the TAP's fd; the engine uses
  // the TAP's default backend, io_uring where the kernel allows it.)
  if (!ns) return miniport::fail(ns.error());
  p.ns.emplace(std::move(*ns));
  auto nl = emulator::RouteNetlink::open_in(*p.ns);
  if (!nl) return miniport::fail(nl.error());
  COEMU_TRY(nl->add_bridge("coebr0"));
  COEMU_TRY(nl->set_mtu("coebr0", mtu));
  for (const char* n : {"coet0", "coet1"}) {
    auto t = emulator::TapDevice::open({.name = n, .netns = &*p.ns});
    if (!t) return miniport::fail(t.error());
    COEMU_TRY(nl->set_mtu(n, mtu));
    COEMU_TRY(nl->enslave("coebr0", n));
    COEMU_TRY(nl->set_up(n, true));
    COEMU_TRY((*t)->refresh_mtu());
    (p.a ? p.b : p.a) = std::move(*t);
  }
  COEMU_TRY(nl->set_up("coebr0", true));
  return p;
}

miniport::Result<VethPair> make_veth_pair() {
  VethPair v;
  v.a.emplace(COEMU_TRY(emulator::Netns::create_anonymous()));
  v.b.emplace(COEMU_TRY(emulator::Netns::create_anonymous()));
  auto nl = COEMU_TRY(emulator::RouteNetlink::open_in(*v.a));
  COEMU_TRY(nl.add_veth("coev0", "coev1", &*v.b));
  COEMU_TRY(nl.set_up("coev0", true));
  COEMU_TRY(nl.add_address("coev0", "10.99.0.1/24"));
  auto nl_b = COEMU_TRY(emulator::RouteNetlink::open_in(*v.b));
  COEMU_TRY(nl_b.set_up("coev1", true));
  COEMU_TRY(nl_b.add_address("coev1", "10.99.0.2/24"));
  return v;
}

namespace {

using Path = BenchPath;

using emulator::DataPath;
using emulator::Link;
using emulator::RxPacket;
using emulator::TxCompletion;
using emulator::TxPacket;
using miniport::MacAddress;
using miniport::VcId;
using Clock = std::chrono::steady_clock;
using miniport::Result;

const MacAddress kMacA = MacAddress::local(0xa);
const MacAddress kMacB = MacAddress::local(0xb);
constexpr uint32_t kVciAtB = 200, kVciAtA = 100;

// Counts deliveries; optionally echoes every packet back on `echo_vc`.
class Sink : public emulator::DataPathHandler {
 public:
  void on_receive(std::span<RxPacket> pkts) override {
    // Set after the data path started (it needs the data path), so atomic.
    if (DataPath* echo = echo_dp.load(std::memory_order_acquire)) {
      for (RxPacket& p : pkts) {
        TxPacket t{echo->alloc(), 0};
        if (!t.buf) continue;
        std::memcpy(t.buf.data() + miniport::kFramePayloadOffset, p.payload().data(), p.payload().size());
        t.buf.set_size(static_cast<uint32_t>(p.payload().size()));
        (void)echo->send(echo_vc, std::span(&t, 1));
      }
    }
    received.fetch_add(pkts.size(), std::memory_order_release);
  }
  void on_send_complete(std::span<const TxCompletion> done) override {
    completed.fetch_add(done.size(), std::memory_order_release);
    completed.notify_all();  // a sender may wait for its window to open
  }
  std::atomic<uint64_t> received{0}, completed{0};
  std::atomic<DataPath*> echo_dp{nullptr};
  VcId echo_vc;
};

struct Node {
  miniport::Miniport mp;
  Sink sink;
  std::unique_ptr<DataPath> dp;
  VcId vc;
  Node(const MacAddress& mac, uint32_t mtu) : mp({.mac = mac, .mtu = mtu}) {}
};

// A PVC between the two nodes: A sends on B's label, B on A's.
void open_pvc(Node& a, Node& b) {
  a.vc = *a.mp.vcs().create(1);
  b.vc = *b.mp.vcs().create(2);
  (void)a.mp.vcs().activate(a.vc, {.peer = kMacB, .tx_vci = kVciAtB, .pvc_rx_vci = kVciAtA});
  (void)b.mp.vcs().activate(b.vc, {.peer = kMacA, .tx_vci = kVciAtA, .pvc_rx_vci = kVciAtB});
}

std::vector<uint8_t> raw_frame(const MacAddress& dst, const MacAddress& src, uint32_t vci, size_t payload) {
  std::vector<uint8_t> f(std::max(miniport::kFrameHeaders + payload, miniport::kMinEthFrame));
  (void)miniport::encode_data_header(dst, src, vci, payload, f);
  return f;
}

void pin_self(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<unsigned>(cpu) % std::max(1u, std::thread::hardware_concurrency()), &set);
  (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

void unpin_self() {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (unsigned c = 0; c < std::max(1u, std::thread::hardware_concurrency()); ++c) CPU_SET(c, &set);
  (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

// Reads everything the link offers until stop; counts DATA frames for vci.
void drain(Link& l, std::atomic<bool>& stop, std::atomic<uint64_t>& got) {
  std::vector<uint8_t> buf((l.mtu() + 14) * 32);
  emulator::RxFrame slots[32];
  const size_t cap = l.mtu() + 14;
  while (!stop.load(std::memory_order_relaxed)) {
    for (size_t i = 0; i < 32; ++i) slots[i] = emulator::RxFrame{{&buf[i * cap], cap}};
    auto n = l.recv_burst(slots);
    if (!n || *n == 0) {
      (void)l.wait_readable(std::chrono::milliseconds(5));
      continue;
    }
    uint64_t k = 0;
    for (size_t i = 0; i < *n; ++i)
      if (slots[i].len >= 14 && buf[i * cap + 12] == 0x88 && buf[i * cap + 13] == 0xb6) ++k;
    got.fetch_add(k, std::memory_order_relaxed);
  }
}

struct Rate {
  double per_s = 0;
  double loss = 0;
};

// Baseline: a plain loop writes frames into one link, one call per frame, and
// another thread reads them from the other end. With `batched` (TAPs) it
// writes bursts of 32 through the TAP's io_uring instead: no engine, only
// batched I/O, so it bounds what batching can gain on this path.
Rate raw_throughput(Path& p, size_t payload, double seconds, bool batched = false) {
  auto f = raw_frame(kMacB, kMacA, kVciAtB, payload);
  std::span<const uint8_t> fs(f);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> got{0};
  std::jthread reader([&] {
    pin_self(1);
    drain(*p.b, stop, got);
  });
  pin_self(0);
  uint64_t written = 0;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  const auto t0 = Clock::now();
  auto* tap = dynamic_cast<emulator::TapDevice*>(p.a.get());
  std::array<std::span<const uint8_t>, 32> burst;
  burst.fill(fs);
  while (Clock::now() < end) {
    if (tap && batched) {
      for (int i = 0; i < 2; ++i) written += tap->send_burst(burst).value_or(0);
      continue;
    }
    for (int i = 0; i < 64; ++i) {
      if (tap) written += ::write(tap->queue_fd(0), f.data(), f.size()) > 0;  // one syscall per frame
      else written += p.a->send_burst(std::span(&fs, 1)).value_or(0);
    }
  }
  const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
  unpin_self();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the tail arrive
  stop = true;
  reader.join();
  const double g = static_cast<double>(got.load());
  return {g / dt, written ? 1.0 - g / static_cast<double>(written) : 0};
}

// A client keeps `window` sends of `payload` bytes outstanding on a.vc
// until `end`, sleeping (futex) while the window is full as a real one
// would, instead of spinning on a full ring: on two cores a spinning client
// takes the CPU the I/O threads need. tick() runs each round. Returns how
// many sends the data path took.
template <class End, class Tick>
uint64_t keep_sending(Node& a, size_t payload, uint64_t window, End end, Tick&& tick) {
  uint64_t taken = 0;
  TxPacket batch[32];
  while (Clock::now() < end) {
    tick();
    if (const uint64_t c = a.sink.completed.load(std::memory_order_acquire); taken - c >= window) {
      a.sink.completed.wait(c, std::memory_order_acquire);
      continue;
    }
    size_t n = 0;
    while (n < 32) {
      if (!batch[n].buf) batch[n].buf = a.dp->alloc();
      if (!batch[n].buf) break;
      batch[n].buf.set_size(static_cast<uint32_t>(payload));
      ++n;
    }
    const size_t t = n ? a.dp->send(a.vc, std::span(batch, n)) : 0;
    for (size_t i = t; i < n; ++i) batch[i - t] = std::move(batch[i]);
    taken += t;
    if (t == 0) std::this_thread::yield();
  }
  for (auto& x : batch) x.buf.reset();
  return taken;
}

// The engine: a client thread sends through node A's data path on a PVC; node
// B's handler counts what arrives.
Rate engine_throughput(Path& p, size_t payload, double seconds, const BenchDatapathOptions& o) {
  const bool busy = o.busy_poll, inline_tx = o.inline_tx;
  const uint32_t mtu = p.a->mtu();
  Node a(kMacA, mtu), b(kMacB, mtu);
  open_pvc(a, b);
  const uint32_t buffers = mtu > 9000 ? 1024 : 8192;
  // Node A (client and I/O thread) on CPU 0, node B on CPU 1: like the raw
  // baseline's writer and reader, each side gets a core.
  emulator::DataPathOptions dpo{
      .pool_buffers = buffers, .busy_poll = busy, .poll_window = std::chrono::microseconds(o.poll_us),
      .inline_tx = inline_tx, .uring_rx = o.uring_rx, .cpu = 0};
  a.dp = std::move(*DataPath::start(*p.a, a.mp, a.sink, dpo));
  dpo.cpu = 1;
  b.dp = std::move(*DataPath::start(*p.b, b.mp, b.sink, dpo));
  pin_self(0);
  // The window covers about 2 MB of frames (32..2048 frames), so large
  // frames cycle through cache-warm buffers.
  const uint64_t window = std::clamp<uint64_t>((2u << 20) / (payload + 22), 32, 2048);
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  const auto t0 = Clock::now();
  const uint64_t taken = keep_sending(a, payload, window, end, [] {});
  const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
  unpin_self();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const double got = static_cast<double>(b.sink.received.load());
  a.dp.reset();
  b.dp.reset();
  return {got / dt, taken ? 1.0 - got / static_cast<double>(taken) : 0};
}

// A PVC shaped to `rate` bytes/s (guaranteed service): a client keeps it
// busy with 1000-byte payloads; the rate of frames delivered at B, in wire
// bytes per second, measured after the first fifth (the bucket's burst).
double shaped_rate(Path& p, uint32_t rate, double seconds, const BenchDatapathOptions& o) {
  constexpr size_t kPayload = 1000;
  const double frame = static_cast<double>(miniport::kFrameHeaders + kPayload);
  Node a(kMacA, p.a->mtu()), b(kMacB, p.b->mtu());
  open_pvc(a, b);
  (void)a.mp.vcs().activate(a.vc, {.peer = kMacB, .tx_vci = kVciAtB, .pvc_rx_vci = kVciAtA,
                                   .shape_rate = rate, .shape_bucket = 3 * 1522});
  const emulator::DataPathOptions dpo{.busy_poll = o.busy_poll, .poll_window = std::chrono::microseconds(o.poll_us)};
  a.dp = std::move(*DataPath::start(*p.a, a.mp, a.sink, dpo));
  b.dp = std::move(*DataPath::start(*p.b, b.mp, b.sink, dpo));
  constexpr uint64_t kWindow = 512;  // within what the shaper holds: nothing is refused
  const auto t0 = Clock::now();
  const auto t1 = t0 + std::chrono::duration<double>(seconds / 5);
  const auto end = t0 + std::chrono::duration<double>(seconds);
  std::optional<uint64_t> at_t1;
  (void)keep_sending(a, kPayload, kWindow, end, [&] {
    if (!at_t1 && Clock::now() >= t1) at_t1 = b.sink.received.load();
  });
  const uint64_t got = b.sink.received.load() - at_t1.value_or(0);
  const double dt = std::chrono::duration<double>(Clock::now() - t1).count();
  a.dp.reset();
  b.dp.reset();
  return static_cast<double>(got) * frame / dt;
}

Rate median(std::vector<Rate> v) {  // by rate
  std::sort(v.begin(), v.end(), [](const Rate& a, const Rate& b) { return a.per_s < b.per_s; });
  return v[v.size() / 2];
}

// One frame the plain way: write(2) on a TAP, send_burst on the memory wire.
void raw_send(Link& l, std::span<const uint8_t> f) {
  if (auto* tap = dynamic_cast<emulator::TapDevice*>(&l)) {
    [[maybe_unused]] ssize_t n = ::write(tap->queue_fd(0), f.data(), f.size());
  } else {
    (void)l.send_burst(std::span(&f, 1));
  }
}

// Raw ping-pong in the engine's wait mode: the client spins on its socket as
// the engine's client spins on its handler's counter, and the echo side blocks
// in poll as the engine's I/O threads block in epoll (or spins with busy).
std::vector<double> raw_rtt(Path& p, uint32_t rounds, bool busy) {
  auto f = raw_frame(kMacB, kMacA, kVciAtB, 64);
  auto back = raw_frame(kMacA, kMacB, kVciAtA, 64);
  std::atomic<bool> stop{false};
  std::jthread echo([&] {
    std::vector<uint8_t> buf(p.b->mtu() + 14);
    std::span<const uint8_t> bs(back);
    while (!stop) {
      if (!busy && !p.b->wait_readable(std::chrono::milliseconds(20)).value_or(false)) continue;
      emulator::RxFrame s{{buf.data(), buf.size()}};
      while (p.b->recv_burst(std::span(&s, 1)).value_or(0) == 1)
        if (s.len >= 14 && buf[13] == 0xb6) raw_send(*p.b, bs);
    }
  });
  std::vector<double> us;
  std::vector<uint8_t> buf(p.a->mtu() + 14);
  std::span<const uint8_t> fs(f);
  for (uint32_t r = 0; r < rounds; ++r) {
    const auto t0 = Clock::now();
    raw_send(*p.a, fs);
    bool ok = false;
    const auto deadline = t0 + std::chrono::seconds(1);
    while (!ok && Clock::now() < deadline) {
      emulator::RxFrame s{{buf.data(), buf.size()}};
      while (p.a->recv_burst(std::span(&s, 1)).value_or(0) == 1)
        if (s.len >= 14 && buf[13] == 0xb6) ok = true;
    }
    if (ok) us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  stop = true;
  return us;
}

// The client side of the engine's ping-pong. It lives in its receive upcall,
// as an NDIS protocol driver may send from its receive handler: each echo
// ends a round trip and sends the next ping at once. (The raw baseline's
// client likewise does its own reads: one thread per side in both.)
class Pinger : public emulator::DataPathHandler {
 public:
  DataPath* dp = nullptr;
  VcId vc;
  uint32_t rounds = 0;
  std::vector<double> us;  // I/O thread's until `done` reaches rounds (or the run gives up)
  std::atomic<uint32_t> done{0};

  bool ping() {
    TxPacket t{dp->alloc(), 0};
    if (!t.buf) return false;
    t.buf.set_size(64);
    sent_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    return dp->send(vc, std::span(&t, 1)) == 1;
  }
  void on_receive(std::span<RxPacket> pkts) override {
    const auto now = Clock::now().time_since_epoch().count();
    const auto sent = sent_.load(std::memory_order_relaxed);
    for (size_t i = 0; i < pkts.size(); ++i) {
      if (done.load(std::memory_order_relaxed) >= rounds) return;
      us.push_back(static_cast<double>(now - sent) / 1e3);
      done.fetch_add(1, std::memory_order_release);
    }
    if (done.load(std::memory_order_relaxed) < rounds) (void)ping();
  }
  void on_send_complete(std::span<const TxCompletion>) override {}

 private:
  std::atomic<Clock::rep> sent_{0};
};

// Engine ping-pong on the PVC: B's handler echoes, A's handler pings.
std::vector<double> engine_rtt(Path& p, uint32_t rounds, const BenchDatapathOptions& o) {
  const uint32_t mtu = p.a->mtu();
  Node a(kMacA, mtu), b(kMacB, mtu);
  open_pvc(a, b);
  Pinger pinger;
  pinger.rounds = rounds;
  pinger.vc = a.vc;
  const emulator::DataPathOptions dpo{.busy_poll = o.busy_poll, .poll_window = std::chrono::microseconds(o.poll_us),
                                      .inline_tx = o.inline_tx, .uring_rx = o.uring_rx};
  b.sink.echo_vc = b.vc;  // before the I/O threads start: they read it
  a.dp = std::move(*DataPath::start(*p.a, a.mp, pinger, dpo));
  b.dp = std::move(*DataPath::start(*p.b, b.mp, b.sink, dpo));
  b.sink.echo_dp.store(b.dp.get(), std::memory_order_release);
  pinger.dp = a.dp.get();
  // The first ping from here; the rest from the upcall. A lost frame stalls
  // the chain: after a second without progress the run ends with what it has.
  uint32_t seen = 0;
  auto progress = Clock::now();
  if (pinger.ping()) {
    while (pinger.done.load(std::memory_order_acquire) < rounds && Clock::now() - progress < std::chrono::seconds(1)) {
      if (const uint32_t d = pinger.done.load(std::memory_order_acquire); d != seen) {
        seen = d;
        progress = Clock::now();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  a.dp.reset();  // joins the I/O thread: `us` is ours now
  b.dp.reset();
  return std::move(pinger.us);
}

// The paths --links names: memory, tap or both.
std::vector<std::string> link_kinds(const std::string& links) {
  std::vector<std::string> kinds;
  if (links == "memory" || links == "both") kinds.push_back("memory");
  if (links == "tap" || links == "both") kinds.push_back("tap");
  return kinds;
}

// make_bench_path, saying why on stderr when it cannot be built.
std::optional<BenchPath> open_path(const std::string& kind, uint32_t mtu) {
  auto path = make_bench_path(kind, mtu);
  if (path) return std::move(*path);
  fmt::print(stderr, "coemu bench: cannot build the {} path: {}{}\n", kind, emulator::last_error(),
             kind == "tap" ? " (TAP cases need root; try --links memory)" : "");
  return std::nullopt;
}

}  // namespace

int run_bench_datapath(const BenchDatapathOptions& o, BenchReport& report) {
  const std::vector<std::string> kinds = link_kinds(o.links);
  if (kinds.empty()) {
    fmt::print(stderr, "coemu bench: --links must be memory, tap or both, got '{}'\n", o.links);
    return 2;
  }
  int rc = 0;
  for (const auto& kind : kinds) {
    const std::string raw_kind = kind == "tap" ? "raw TAP write" : "raw memory";
    for (uint32_t size : o.sizes) {
      const uint32_t mtu = size + 22 > 1500 ? 65521 : 1500;
      auto path = open_path(kind, mtu);
      if (!path) {
        rc = 1;
        break;
      }
      if (size + miniport::kFrameHeaders > mtu + 14) {
        fmt::print(stderr, "coemu bench: payload {} does not fit MTU {}\n", size, mtu);
        return 2;
      }
      report.progress(fmt::format("datapath: {} {} B, {} x {} s each for coemu and the baseline ...", kind, size,
                                  o.repeat, o.seconds));
      // Raw and engine alternate, so slow phases of a shared machine hit
      // both; the medians are reported.
      std::vector<Rate> raws, engs, bounds;
      // On a TAP that writes through io_uring, a third contender: the raw loop
      // with batched writes, which no engine could beat by much.
      auto* tap = dynamic_cast<emulator::TapDevice*>(path->a.get());
      const bool bound = tap && tap->io() == emulator::TapIo::kIoUring;
      for (uint32_t i = 0; i < o.repeat; ++i) {
        raws.push_back(raw_throughput(*path, size, o.seconds));
        engs.push_back(engine_throughput(*path, size, o.seconds, o));
        if (bound) bounds.push_back(raw_throughput(*path, size, o.seconds, /*batched=*/true));
      }
      const Rate raw = median(raws), eng = median(engs);
      std::vector<double> ev, rv;
      for (const auto& x : engs) ev.push_back(x.per_s);
      for (const auto& x : raws) rv.push_back(x.per_s);
      report.add({.suite = "datapath", .name = fmt::format("{}_throughput_{}B", kind, size), .unit = "frames/s",
                  .value = eng.per_s, .baseline = raw.per_s, .loss = eng.loss, .baseline_loss = raw.loss,
                  .values = ev, .baselines = rv, .baseline_kind = raw_kind, .payload = size, .link = kind});
      if (bound) {
        std::vector<double> bv;
        for (const auto& x : bounds) bv.push_back(x.per_s);
        const Rate b = median(bounds);
        report.add({.suite = "datapath", .name = fmt::format("{}_batched_raw_{}B", kind, size), .unit = "frames/s",
                    .value = b.per_s, .baseline = raw.per_s, .loss = b.loss, .baseline_loss = raw.loss,
                    .values = bv, .baselines = rv, .baseline_kind = raw_kind});
      }
    }
    auto path = make_bench_path(kind, 1500);
    if (!path) continue;
    // The baseline of a shaped VC is its token rate: the ratio says how
    // closely the shaper keeps to it.
    report.progress(fmt::format("datapath: {} shaped VC at {} bytes/s ...", kind, o.shape_rate));
    std::vector<double> rates;
    for (uint32_t i = 0; i < o.repeat; ++i) rates.push_back(shaped_rate(*path, o.shape_rate, o.seconds, o));
    report.add({.suite = "datapath", .name = kind + "_shaped_rate", .unit = "bytes/s", .value = median(rates),
                .baseline = static_cast<double>(o.shape_rate), .values = rates, .baseline_kind = "token rate"});
  }
  return rc;
}

namespace {

// UDP ping-pong over a veth between two namespaces: a 64-byte datagram and
// its echo, both ends blocking in recv. Empty when the path cannot be built.
std::vector<double> udp_rtt(uint32_t rounds) {
  auto veth = make_veth_pair();
  if (!veth) return {};
  auto server = emulator::run_in(*veth->b, []() -> miniport::Result<int> {
    const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(4243);
    a.sin_addr.s_addr = htonl(kVethAddrB);
    if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      if (s >= 0) ::close(s);
      return miniport::fail(emulator::record_errno("udp bind", errno));
    }
    return s;
  });
  if (!server) return {};
  const int sfd = *server;
  std::atomic<bool> stop{false};
  std::jthread echo([&] {
    char buf[2048];
    while (!stop.load()) {
      pollfd p{sfd, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      sockaddr_in from{};
      socklen_t len = sizeof from;
      const ssize_t n = ::recvfrom(sfd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n > 0) (void)::sendto(sfd, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  });
  std::vector<double> us;
  std::jthread client([&] {
    if (!emulator::enter(*veth->a)) return;
    const int c = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(4243);
    a.sin_addr.s_addr = htonl(kVethAddrB);
    if (c < 0 || ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      if (c >= 0) ::close(c);
      return;
    }
    const timeval tv{1, 0};  // a lost datagram costs a second, not the run
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[64] = {};
    for (uint32_t r = 0; r < rounds; ++r) {
      const auto t0 = Clock::now();
      if (::send(c, buf, sizeof buf, 0) != sizeof buf) continue;
      if (::recv(c, buf, sizeof buf, 0) == sizeof buf)
        us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    ::close(c);
  });
  client.join();
  stop = true;
  echo.join();
  ::close(sfd);
  return us;
}

}  // namespace

int run_bench_latency(const BenchLatencyOptions& o, BenchReport& report) {
  int rc = 0;
  std::vector<double> tap_blocking, tap_blocking_p50;  // the engine's TAP figures, for the UDP comparison
  for (const auto& kind : link_kinds(o.links)) {
    auto path = open_path(kind, 1500);
    if (!path) {
      rc = 1;
      continue;
    }
    for (const bool busy : {false, true}) {
      const std::string mode = busy ? "busy_poll" : "blocking";
      report.progress(fmt::format("latency: {} {} ping-pong, {} x {} round trips ...", kind, mode, o.repeat, o.rounds));
      BenchDatapathOptions dpo;
      dpo.busy_poll = busy;
      dpo.poll_us = o.poll_us;
      dpo.inline_tx = o.inline_tx;
      std::vector<double> eng_all, raw_all, p50, p50_raw, p99, p99_raw;
      for (uint32_t i = 0; i < o.repeat; ++i) {
        auto raw = raw_rtt(*path, o.rounds, busy);
        auto eng = engine_rtt(*path, o.rounds, dpo);
        p50.push_back(percentile(eng, 0.5));
        p99.push_back(percentile(eng, 0.99));
        p50_raw.push_back(percentile(raw, 0.5));
        p99_raw.push_back(percentile(raw, 0.99));
        eng_all.insert(eng_all.end(), eng.begin(), eng.end());
        raw_all.insert(raw_all.end(), raw.begin(), raw.end());
      }
      if (eng_all.empty() || raw_all.empty()) {
        fmt::print(stderr, "coemu bench: no round trip completed on the {} path ({})\n", kind, mode);
        rc = 1;
        continue;
      }
      const std::string raw_kind = kind == "tap" ? "raw TAP" : "raw memory";
      if (kind == "tap" && !busy) tap_blocking = eng_all, tap_blocking_p50 = p50;
      report.add({.suite = "latency", .name = fmt::format("{}_{}_rtt_p50", kind, mode), .unit = "us",
                  .value = median(p50), .baseline = median(p50_raw), .values = p50, .baselines = p50_raw,
                  .baseline_kind = raw_kind, .link = kind + " " + mode, .samples = eng_all,
                  .baseline_samples = raw_all});
      report.add({.suite = "latency", .name = fmt::format("{}_{}_rtt_p99", kind, mode), .unit = "us",
                  .value = median(p99), .baseline = median(p99_raw), .values = p99, .baselines = p99_raw,
                  .baseline_kind = raw_kind});
    }
  }
  if (!tap_blocking.empty()) {
    report.progress(fmt::format("latency: UDP ping-pong over a veth, {} x {} round trips ...", o.repeat, o.rounds));
    std::vector<double> udp, udp_p50;
    for (uint32_t i = 0; i < o.repeat; ++i) {
      auto u = udp_rtt(o.rounds);
      if (u.empty()) break;
      udp_p50.push_back(percentile(u, 0.5));
      udp.insert(udp.end(), u.begin(), u.end());
    }
    if (udp_p50.size() < o.repeat) {
      fmt::print(stderr, "coemu bench: the UDP baseline failed: {}\n", emulator::last_error());
      rc = 1;
    } else {
      // coemu's figures are the TAP blocking case's, measured just before.
      report.add({.suite = "latency", .name = "tap_blocking_rtt_p50_vs_udp", .unit = "us",
                  .value = median(tap_blocking_p50), .baseline = median(udp_p50), .values = tap_blocking_p50,
                  .baselines = udp_p50, .baseline_kind = "UDP over veth", .link = "UDP veth", .samples = {},
                  .baseline_samples = udp});
    }
  }
  return rc;
}

}  // namespace tools
