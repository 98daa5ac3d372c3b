#include "tools/bench_calls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "emulator/node.h"
#include "emulator/route_netlink.h"
#include "tools/bench_datapath.h"

namespace tools {

namespace {

using Clock = std::chrono::steady_clock;
using emulator::Node;
using miniport::Status;
using miniport::VcId;
using Ev = cm::ClientEvent::Kind;

const cm::SapSpec kSap{1, {0, 42}};

struct Run {
  double per_s = 0;
  std::vector<double> setup_us;
  uint64_t failed = 0;
};

// ---- coemu: two nodes on TAPs ----

// Keeps `inflight` call cycles (create VC, make call, close it) going until
// the deadline, all from its callbacks on alpha's control thread.
class Cycler : public emulator::NodeClient {
 public:
  Node* node = nullptr;
  cm::AfOpenId af;
  Clock::time_point deadline;
  std::atomic<uint64_t> cycles{0}, failed{0};
  std::atomic<int> live{0};

  void place() {
    auto vc = node->create_vc(af);
    if (!vc) {
      failed.fetch_add(1);
      live.fetch_sub(1);
      return;
    }
    {
      std::lock_guard lock(mu_);
      started_[vc->slot] = Clock::now();
    }
    if (node->make_call(*vc, "beta", kSap) != Status::kPending) {
      failed.fetch_add(1);
      live.fetch_sub(1);
      std::lock_guard lock(mu_);
      to_delete_.push_back(*vc);
    }
  }
  void on_event(const cm::ClientEvent& e) override {
    switch (e.kind) {
      case Ev::kMakeCallComplete: {
        {
          std::lock_guard lock(mu_);
          setup_us_.push_back(std::chrono::duration<double, std::micro>(Clock::now() - started_[e.vc.slot]).count());
        }
        if (e.status == Status::kSuccess) {
          (void)node->close_call(e.vc);
        } else {
          failed.fetch_add(1);
          next(e.vc);
        }
        break;
      }
      case Ev::kIncomingClose:
        (void)node->close_call(e.vc);
        break;
      case Ev::kCloseCallComplete:
        cycles.fetch_add(1);
        next(e.vc);
        break;
      default:
        break;
    }
    drain();
  }
  // VCs go once their deactivation has drained (any thread but under no lock).
  void drain() {
    std::vector<VcId> vcs;
    {
      std::lock_guard lock(mu_);
      vcs.swap(to_delete_);
    }
    std::erase_if(vcs, [&](VcId vc) { return node->delete_vc(vc) == Status::kSuccess; });
    std::lock_guard lock(mu_);
    to_delete_.insert(to_delete_.end(), vcs.begin(), vcs.end());
  }
  bool all_deleted() {
    std::lock_guard lock(mu_);
    return to_delete_.empty();
  }
  std::vector<double> take_setups() {
    std::lock_guard lock(mu_);
    return std::exchange(setup_us_, {});
  }

 private:
  void next(VcId done) {
    {
      std::lock_guard lock(mu_);
      to_delete_.push_back(done);
    }
    if (Clock::now() < deadline) place();
    else live.fetch_sub(1);
  }

  std::mutex mu_;  // never held while calling into the node
  std::map<uint32_t, Clock::time_point> started_;
  std::vector<double> setup_us_;
  std::vector<VcId> to_delete_;
};

struct CoemuRig {
  Cycler cycler;  // before the rig: outlives the nodes
  CallRig rig;
};

miniport::Result<std::unique_ptr<CoemuRig>> make_coemu_rig(const BenchCallsOptions& o) {
  auto r = std::make_unique<CoemuRig>();
  const emulator::NodeConfig base{
      .data = {.busy_poll = o.busy_poll, .poll_window = std::chrono::microseconds(o.poll_us)},
      .sig_write_now = o.sig_write_now,
      .io_thread_signals = o.io_thread_signals};
  COEMU_TRY(start_call_rig(r->rig, "tap", base, kSap, r->cycler));
  r->cycler.node = r->rig.alpha.get();
  r->cycler.af = r->rig.af;
  return r;
}

Run coemu_run(CoemuRig& rig, uint32_t inflight, double seconds) {
  Cycler& c = rig.cycler;
  c.cycles = 0;
  c.failed = 0;
  c.live = static_cast<int>(inflight);
  const auto start = Clock::now();
  c.deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (uint32_t i = 0; i < inflight; ++i) c.place();
  std::this_thread::sleep_until(c.deadline);
  Run r;
  r.per_s = static_cast<double>(c.cycles.load()) / seconds;
  const auto until = Clock::now() + std::chrono::seconds(20);
  while ((c.live.load() > 0 || !c.all_deleted()) && Clock::now() < until) {
    c.drain();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  r.setup_us = c.take_setups();
  r.failed = c.failed.load();
  return r;
}

// ---- TCP: connect + accept + close over a veth between two namespaces ----

constexpr uint16_t kPort = 4242;

struct TcpRig {
  VethPair veth;  // a: the client, b: the server
  std::atomic<bool> stop{false};
  std::jthread server;
  ~TcpRig() {
    stop = true;
    if (server.joinable()) server.join();
  }
};

miniport::Result<void> write_sysctl(const char* path, const char* value) {
  const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return miniport::fail(emulator::record_errno(path, errno));
  const ssize_t n = ::write(fd, value, std::strlen(value));
  ::close(fd);
  if (n < 0) return miniport::fail(emulator::record_errno(path, errno));
  return {};
}

miniport::Result<std::unique_ptr<TcpRig>> make_tcp_rig() {
  auto rig = std::make_unique<TcpRig>();
  rig->veth = COEMU_TRY(make_veth_pair());
  // Tens of thousands of short connections: the whole port range, and
  // TIME_WAIT ports reused should any stay on the client.
  COEMU_TRY(emulator::run_in(*rig->veth.a, []() -> miniport::Result<void> {
    COEMU_TRY(write_sysctl("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535"));
    return write_sysctl("/proc/sys/net/ipv4/tcp_tw_reuse", "1");
  }));
  auto listener = emulator::run_in(*rig->veth.b, []() -> miniport::Result<int> {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) return miniport::fail(emulator::record_errno("socket", errno));
    const int one = 1;
    ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(kPort);
    a.sin_addr.s_addr = htonl(kVethAddrB);
    if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s, 4096) != 0) {
      ::close(s);
      return miniport::fail(emulator::record_errno("bind/listen", errno));
    }
    return s;
  });
  if (!listener) return miniport::fail(listener.error());
  rig->server = std::jthread([lfd = *listener, r = rig.get()] {
    while (!r->stop.load()) {
      pollfd p{lfd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      for (;;) {
        const int c = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) break;
        ::close(c);
      }
    }
    ::close(lfd);
  });
  return rig;
}

Run tcp_run(TcpRig& rig, uint32_t inflight, double seconds) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::atomic<uint64_t> cycles{0}, failed{0};
  std::mutex mu;
  std::vector<double> setups;
  {
    std::vector<std::jthread> clients;
    for (uint32_t i = 0; i < inflight; ++i) {
      clients.emplace_back([&] {
        if (!emulator::enter(*rig.veth.a)) {
          failed.fetch_add(1);
          return;
        }
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(kPort);
        a.sin_addr.s_addr = htonl(kVethAddrB);
        std::vector<double> mine;
        while (Clock::now() < deadline) {
          const auto t0 = Clock::now();
          const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
          if (s < 0 || ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            failed.fetch_add(1);
            if (s >= 0) ::close(s);
            continue;
          }
          mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
          // An orderly teardown, as a call's RELEASE / RELEASE_COMPLETE: the
          // server closes first, we see its FIN, then close. (TIME_WAIT
          // stays with the server, so the client's ports never run out.)
          char b;
          while (::read(s, &b, 1) > 0) {
          }
          ::close(s);
          if (Clock::now() <= deadline) cycles.fetch_add(1);
        }
        std::lock_guard lock(mu);
        setups.insert(setups.end(), mine.begin(), mine.end());
      });
    }
  }
  return Run{static_cast<double>(cycles.load()) / seconds, std::move(setups), failed.load()};
}

}  // namespace

miniport::Result<void> start_call_rig(CallRig& rig, const std::string& link, const emulator::NodeConfig& base,
                                      const cm::SapSpec& sap, emulator::NodeClient& client) {
  rig.path = COEMU_TRY(make_bench_path(link, 1500));
  emulator::NodeConfig cfg = base;
  cfg.limits = cm::CmLimits::none();  // the benches measure the engine, not the flood guards
  cfg.address = "alpha";
  cfg.mac = miniport::MacAddress::local(0xa);
  rig.alpha = COEMU_TRY(Node::start(*rig.path.a, cfg));
  cfg.address = "beta";
  cfg.mac = miniport::MacAddress::local(0xb);
  rig.beta = COEMU_TRY(Node::start(*rig.path.b, cfg));
  rig.acceptor.node = rig.beta.get();
  auto af_b = COEMU_TRY(rig.beta->open_af(rig.beta->attach(&rig.acceptor)));
  COEMU_TRY(rig.beta->register_sap(af_b, sap));
  rig.af = COEMU_TRY(rig.alpha->open_af(rig.alpha->attach(&client)));
  const auto until = Clock::now() + std::chrono::seconds(10);
  while (!rig.alpha->knows("beta")) {
    if (Clock::now() > until) {
      emulator::set_last_error("no HELLO from beta within 10 s");
      return miniport::fail(Status::kFailure);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return {};
}

int run_bench_calls(const BenchCallsOptions& o, BenchReport& report) {
  auto coemu = make_coemu_rig(o);
  if (!coemu) {
    fmt::print(stderr, "coemu bench calls: cannot build the TAP path: {} (needs root)\n", emulator::last_error());
    return 1;
  }
  auto tcp = make_tcp_rig();
  if (!tcp) {
    fmt::print(stderr, "coemu bench calls: cannot build the TCP baseline: {}\n", emulator::last_error());
    return 1;
  }
  int rc = 0;
  for (uint32_t n : o.inflight) {
    report.progress(fmt::format("calls: {} in flight, {} x {} s each for coemu and TCP ...", n, o.repeat, o.seconds));
    std::vector<double> rate_c, rate_t, p50_c, p50_t, p99_c, p99_t;
    uint64_t failed = 0;
    for (uint32_t i = 0; i < o.repeat; ++i) {
      Run t = tcp_run(**tcp, n, o.seconds);
      Run c = coemu_run(**coemu, n, o.seconds);
      rate_t.push_back(t.per_s);
      rate_c.push_back(c.per_s);
      p50_t.push_back(percentile(t.setup_us, 0.5));
      p50_c.push_back(percentile(c.setup_us, 0.5));
      p99_t.push_back(percentile(t.setup_us, 0.99));
      p99_c.push_back(percentile(c.setup_us, 0.99));
      failed += c.failed;
    }
    if (failed) {
      fmt::print(stderr, "coemu bench calls: {} calls failed\n", failed);
      rc = 1;
    }
    const std::string tcp = "TCP over veth";
    report.add({.suite = "calls", .name = fmt::format("rate_{}_in_flight", n), .unit = "calls/s",
                .value = median(rate_c), .baseline = median(rate_t), .values = rate_c, .baselines = rate_t,
                .baseline_kind = tcp});
    report.add({.suite = "calls", .name = fmt::format("setup_p50_{}_in_flight", n), .unit = "us",
                .value = median(p50_c), .baseline = median(p50_t), .values = p50_c, .baselines = p50_t,
                .baseline_kind = tcp});
    report.add({.suite = "calls", .name = fmt::format("setup_p99_{}_in_flight", n), .unit = "us",
                .value = median(p99_c), .baseline = median(p99_t), .values = p99_c, .baselines = p99_t,
                .baseline_kind = tcp});
  }
  return rc;
}

}  // namespace tools
