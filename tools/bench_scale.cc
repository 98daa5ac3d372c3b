#include "tools/bench_scale.h"

#include <fmt/core.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "emulator/node.h"
#include "tools/bench_calls.h"
#include "tools/bench_datapath.h"

namespace tools {

namespace {

using Clock = std::chrono::steady_clock;
using emulator::Node;
using miniport::Status;
using miniport::VcId;
using Ev = cm::ClientEvent::Kind;

const cm::SapSpec kSap{1, {0, 43}};

// Resident memory of this process, bytes.
uint64_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

// Holds calls from alpha to beta: grows them to a target with `window` being
// set up at a time, or closes the newest ones (a timed batch goes as it
// came, leaving the calls around it untouched), from its callbacks on
// alpha's control context; the main thread sets targets and waits.
class Holder : public emulator::NodeClient {
 public:
  Node* node = nullptr;
  cm::AfOpenId af;
  uint32_t window = 256;

  // Sets up calls until `live` are up.
  void grow_to(uint64_t live) {
    closing_ = false;
    target_ = closed_.load() + live;  // target_, placed_ and up_ count every call ever made
    top_up();
  }
  // Closes the newest calls until `live` are left.
  void close_down_to(uint64_t live) {
    {
      std::lock_guard lock(mu_);
      to_close_ = vcs_.size() > live ? vcs_.size() - live : 0;
      close_target_ = closed_.load() + to_close_;  // counts every close ever made
    }
    closing_ = true;
    top_up();
  }
  // Waits until every call placed is up (growing) or closed, up to `until`.
  bool wait_settled(Clock::time_point until) {
    std::unique_lock lock(mu_);
    return cv_.wait_until(lock, until, [&] {
      return failed_.load() > 0 ||
             (closing_ ? closed_.load() >= close_target_.load() : up_.load() >= target_.load());
    });
  }
  uint64_t up() const { return up_.load(); }
  uint64_t closed() const { return closed_.load(); }
  uint64_t failed() const { return failed_.load(); }
  // Deletes the VCs of closed calls (retried: each goes once its deactivation drained).
  size_t drain() {
    std::vector<VcId> vcs;
    {
      std::lock_guard lock(mu_);
      vcs.swap(to_delete_);
    }
    std::erase_if(vcs, [&](VcId vc) { return node->delete_vc(vc) == Status::kSuccess; });
    std::lock_guard lock(mu_);
    to_delete_.insert(to_delete_.end(), vcs.begin(), vcs.end());
    return to_delete_.size();
  }

  void on_event(const cm::ClientEvent& e) override {
    switch (e.kind) {
      case Ev::kMakeCallComplete:
        in_flight_.fetch_sub(1);
        if (e.status == Status::kSuccess) {
          std::lock_guard lock(mu_);
          vcs_.push_back(e.vc);
          up_.fetch_add(1);
        } else {
          failed_.fetch_add(1);
        }
        break;
      case Ev::kCloseCallComplete: {
        in_flight_.fetch_sub(1);
        std::lock_guard lock(mu_);
        closed_.fetch_add(1);
        to_delete_.push_back(e.vc);
        break;
      }
      case Ev::kIncomingClose:  // the callee never closes first here: a failure
        failed_.fetch_add(1);
        break;
      default:
        return;
    }
    top_up();
    // Deleting here runs inline on the control context (from another
    // thread each delete would be a round trip to it).
    if (closing_) drain();
    cv_.notify_all();
  }

 private:
  // Starts as many set-ups (or closes) as the window and the target allow.
  // Any thread; a slot in the window is claimed before the node is called.
  void top_up() {
    for (;;) {
      if (in_flight_.fetch_add(1) >= window) {
        in_flight_.fetch_sub(1);
        return;
      }
      if (closing_) {
        VcId vc;
        {
          std::lock_guard lock(mu_);
          if (to_close_ > 0 && !vcs_.empty()) {
            vc = vcs_.back();
            vcs_.pop_back();
            --to_close_;
          }
        }
        if (!vc.valid() || node->close_call(vc) != Status::kPending) {
          if (vc.valid()) failed_.fetch_add(1);
          in_flight_.fetch_sub(1);
          cv_.notify_all();
          return;
        }
        continue;
      }
      if (placed_.fetch_add(1) >= target_.load()) {
        placed_.fetch_sub(1);
        in_flight_.fetch_sub(1);
        return;
      }
      auto vc = node->create_vc(af);
      if (!vc || node->make_call(*vc, "beta", kSap) != Status::kPending) {
        failed_.fetch_add(1);
        in_flight_.fetch_sub(1);
        cv_.notify_all();
        return;
      }
    }
  }

  std::atomic<uint64_t> target_{0}, placed_{0}, up_{0}, closed_{0}, failed_{0}, close_target_{0};
  uint64_t to_close_ = 0;  // under mu_: closes still to start
  std::atomic<uint32_t> in_flight_{0};
  std::atomic<bool> closing_{false};
  std::mutex mu_;  // never held while calling into the node
  std::condition_variable cv_;
  std::vector<VcId> vcs_;  // the calls that are up and not being closed, oldest first
  std::vector<VcId> to_delete_;
};

struct Rig {
  Holder holder;  // before the rig: outlives the nodes
  CallRig calls;
  Node* alpha() { return calls.alpha.get(); }
  Node* beta() { return calls.beta.get(); }
};

miniport::Result<std::unique_ptr<Rig>> make_rig(const BenchScaleOptions& o) {
  auto rig = std::make_unique<Rig>();
  COEMU_TRY(start_call_rig(rig->calls, o.link, {}, kSap, rig->holder));
  rig->holder.node = rig->alpha();
  rig->holder.af = rig->calls.af;
  rig->holder.window = o.window;
  return rig;
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

int run_bench_scale(const BenchScaleOptions& o, BenchReport& report) {
  constexpr uint32_t kSmall = 1000;
  if (o.calls < kSmall + 2 * o.batch) {
    fmt::print(stderr, "coemu bench scale: --calls {} must be at least 1000 + 2 x --batch ({})\n", o.calls,
               kSmall + 2 * o.batch);
    return 2;
  }
  auto made = make_rig(o);
  if (!made) {
    fmt::print(stderr, "coemu bench scale: cannot start the nodes: {}{}\n", emulator::last_error(),
               o.link == "tap" ? " (TAPs need root; try --link memory)" : "");
    return 1;
  }
  Rig& rig = **made;
  Holder& h = rig.holder;
  const auto give_up = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.timeout_s));
  // Waits for what was asked of the holder, showing `progress()` once a
  // second; false when the run gives up.
  const auto settle = [&](auto progress) {
    while (!h.wait_settled(std::min(give_up, Clock::now() + std::chrono::seconds(1)))) {
      if (Clock::now() >= give_up) return false;
      report.progress(progress());
    }
    return true;
  };
  // Grows to n calls; the seconds it took, or -1.
  auto grow = [&](uint64_t n) -> double {
    const auto t0 = Clock::now();
    const uint64_t from = h.up();
    h.grow_to(n);
    if (!settle([&] {
          return fmt::format("scale: {} calls up ({:.0f} calls/s) ...", h.up(),
                             static_cast<double>(h.up() - from) / seconds_since(t0));
        }))
      return -1;
    return h.failed() ? -1 : seconds_since(t0);
  };
  auto fail = [&](const char* what) {
    fmt::print(stderr, "\ncoemu bench scale: {}: {} up, {} closed, {} failed\n", what, h.up(), h.closed(), h.failed());
    return 1;
  };
  report.progress(fmt::format("scale: {} calls alpha -> beta on the {}, {} in setup at a time ...", o.calls,
                              o.link == "tap" ? "TAPs" : "memory wire", o.window));
  // Each repetition sets up a batch and closes it again: next to 1000 live
  // calls, then next to calls - batch (the top).
  const auto close = [&](uint64_t live) -> double {
    const auto t0 = Clock::now();
    h.close_down_to(live);
    if (!settle([&] { return fmt::format("scale: {} calls closed ...", h.closed()); })) return -1;
    const double took = seconds_since(t0);
    h.drain();  // (untimed: the caller's deletes are the client's business)
    return h.failed() ? -1 : took;
  };
  // A batch up and down next to `live` calls: rates in calls/s, or false.
  const auto timed_batch = [&](uint64_t live, std::vector<double>& up, std::vector<double>& down) {
    const double t_up = grow(live + o.batch);
    if (t_up < 0) return false;
    const double t_down = close(live);
    if (t_down < 0) return false;
    up.push_back(o.batch / t_up);
    down.push_back(o.batch / t_down);
    return true;
  };
  if (grow(kSmall) < 0) return fail("setting up the first 1000 calls");
  const uint64_t rss_small = resident_bytes();
  std::vector<double> up_small, down_small, up_large, down_large;
  for (uint32_t i = 0; i < o.repeat; ++i)
    if (!timed_batch(kSmall, up_small, down_small)) return fail("the batch next to 1000 calls");
  if (grow(o.calls - o.batch) < 0) return fail("growing");
  if (grow(o.calls) < 0) return fail("growing to the top");
  const uint64_t rss_large = resident_bytes();
  const size_t calls_a = rig.alpha()->calls(), calls_b = rig.beta()->calls();
  if (close(o.calls - o.batch) < 0) return fail("closing");
  for (uint32_t i = 0; i < o.repeat; ++i)
    if (!timed_batch(o.calls - o.batch, up_large, down_large)) return fail("the batch at the top");
  report.progress(fmt::format("scale: closing the last {} calls ...", o.calls - o.batch));
  if (close(0) < 0) return fail("closing");
  // Everything goes: the caller's VCs by its hand, the callee's by its CM.
  while ((h.drain() > 0 || rig.alpha()->calls() > 0 || rig.beta()->calls() > 0 || rig.alpha()->vcs_in_use() > 0 ||
          rig.beta()->vcs_in_use() > 0) &&
         Clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const uint32_t left = rig.alpha()->vcs_in_use() + rig.beta()->vcs_in_use();
  const auto ta = rig.alpha()->sig_counters().transport, tb = rig.beta()->sig_counters().transport;
  report.progress(fmt::format("scale: all closed, {} VCs left; signaling resent {} + {} times (alpha + beta)", left,
                              ta.retransmits + ta.fast_retransmits, tb.retransmits + tb.fast_retransmits));
  if (calls_a != o.calls || calls_b != o.calls || left != 0) return fail("calls or VCs unaccounted for");

  const double per_call = static_cast<double>(rss_large - rss_small) / (2.0 * (o.calls - kSmall));
  // Each rate at the top against the same batch next to 1000 live calls.
  const std::string near = "next to 1000";
  const std::string link = o.link == "tap" ? "_tap" : "";
  const std::string top_at = fmt::format("{}{}", o.calls, link);
  report.add({.suite = "scale", .name = "setup_rate_at_" + top_at, .unit = "calls/s", .value = median(up_large),
              .baseline = median(up_small), .values = up_large, .baselines = up_small, .baseline_kind = near});
  report.add({.suite = "scale", .name = "teardown_rate_at_" + top_at, .unit = "calls/s", .value = median(down_large),
              .baseline = median(down_small), .values = down_large, .baselines = down_small, .baseline_kind = near});
  // The process's resident growth per call per node (both nodes live in
  // this process); the baseline is the 512-byte budget.
  report.add({.suite = "scale", .name = "memory_per_call_per_node" + link, .unit = "bytes", .value = per_call,
              .baseline = 512, .baseline_kind = "budget"});
  return 0;
}

}  // namespace tools
