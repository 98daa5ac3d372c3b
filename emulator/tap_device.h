// TapDevice: a node's NIC as a Linux TAP (/dev/net/tun, IFF_TAP|IFF_NO_PI),
// non-blocking, made (or attached to) inside a chosen network namespace, with
// carrier control, batched frame I/O, optional multi-queue, and impairments on
// the send path.
//
//   TapOptions o; o.name = "coe%d"; o.netns = &ns;
//   auto tap = TapDevice::open(o);           // name() tells what the kernel chose
//   (void)(*tap)->set_carrier(false);          // NDIS media disconnect
//   (void)(*tap)->send_burst(frames);
//
// Configuration after creation (up, MTU, MAC, addresses, netns) goes through
// RouteNetlink; carrier events come from LinkEventWatcher.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "emulator/link.h"
#include "emulator/netns.h"

namespace emulator {

// How frames are written: one write() per frame, or io_uring with a whole
// burst per submission (one syscall per burst; DESIGN.md measured about
// 0.3 us a frame less).
// kAuto uses io_uring when the kernel allows it (it is refused under some
// seccomp profiles) and falls back to write().
enum class TapIo { kAuto, kWrite, kIoUring };

struct TapOptions {
  std::string name = "coe%d";  // "%d" lets the kernel pick a free number; <= 15 chars
  const Netns* netns = nullptr;  // where the device lives; nullptr = caller's namespace
  uint32_t queues = 1;         // > 1 creates an IFF_MULTI_QUEUE device with that many fds
  bool carrier_off = false;    // created without carrier (IFF_NO_CARRIER)
  bool attach = false;         // attach to an existing (persistent) TAP of that name
  bool persist = false;        // keep the device after the last fd closes (lab TAPs)
  TapIo io = TapIo::kAuto;     // transmit backend (receive is one read() per frame)
};

class TapDevice final : public Link {
 public:
  // Errors: kInvalidData for a bad name or queue count (1..16); kNotAccepted
  // when a device of that name exists and attach is false; kAdapterRemoved when
  // attach is set and there is none; kFailure (EPERM/EACCES) without
  // CAP_NET_ADMIN or access to /dev/net/tun. last_error() says which.
  [[nodiscard]] static Result<std::unique_ptr<TapDevice>> open(const TapOptions& opts);
  ~TapDevice() override;

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] int queue_fd(uint32_t q) const noexcept { return fds_[q].get(); }

  // Switches carrier (TUNSETCARRIER): off = the NDIS miniport reports media
  // disconnected. Errors: kNotSupported on kernels before 5.0.
  [[nodiscard]] Result<void> set_carrier(bool on);
  // Hands the device to a user and group (TUNSETOWNER, TUNSETGROUP), so a
  // node that gives up root keeps using it (and may attach to it again).
  [[nodiscard]] Result<void> set_owner(uid_t uid, gid_t gid);

  // Multi-queue only: spreads received DATA frames over the queues by VCI
  // (low 16 bits modulo the queue count) with a steering eBPF program
  // (TUNSETSTEERINGEBPF); other frames go to queue 0. Without it the kernel
  // hashes IP flows, so every coemu frame would land on queue 0. Errors:
  // kFailure when the program cannot be loaded (needs CAP_BPF or
  // CAP_SYS_ADMIN) or attached.
  [[nodiscard]] Result<void> steer_by_vci();

  // Link: send and receive use queue 0; the *_on variants pick a queue.
  [[nodiscard]] Result<size_t> send_burst(std::span<const std::span<const uint8_t>> frames) override {
    return send_burst_on(0, frames);
  }
  [[nodiscard]] Result<size_t> recv_burst(std::span<RxFrame> slots) override { return recv_burst_on(0, slots); }
  [[nodiscard]] Result<size_t> send_burst_on(uint32_t q, std::span<const std::span<const uint8_t>> frames) override;
  [[nodiscard]] Result<size_t> recv_burst_on(uint32_t q, std::span<RxFrame> slots) override;
  [[nodiscard]] int rx_fd_on(uint32_t q) const noexcept override { return fds_[q < fds_.size() ? q : 0].get(); }
  [[nodiscard]] uint32_t queues() const noexcept override { return static_cast<uint32_t>(fds_.size()); }
  [[nodiscard]] Result<bool> wait_readable(miniport::Duration timeout) override;
  void flush_due() override;
  [[nodiscard]] std::optional<Time> next_deadline() const override;
  [[nodiscard]] Result<void> set_impairment(const ImpairmentConfig& cfg) override;
  [[nodiscard]] ImpairmentCounters impairment_counters() const override;
  // Counts and records a frame read from queue q by other means than
  // recv_burst_on (the data path's io_uring receive ring).
  void account_rx(uint32_t q, std::span<const uint8_t> frame) noexcept;
  // The MTU read from the device (refresh_mtu() after changing it).
  [[nodiscard]] uint32_t mtu() const override { return mtu_; }
  [[nodiscard]] Result<uint32_t> refresh_mtu();
  [[nodiscard]] int rx_fd() const noexcept override { return fds_[0].get(); }
  // The transmit backend in use: TapIo::kWrite or TapIo::kIoUring.
  [[nodiscard]] TapIo io() const noexcept { return uring_.empty() ? TapIo::kWrite : TapIo::kIoUring; }

 private:
  TapDevice() = default;
  // Writes one frame; counts, never blocks (the kernel drops when full).
  void write_frame(uint32_t q, std::span<const uint8_t> f) noexcept;

  std::string name_;
  std::vector<UniqueFd> fds_;
  UniqueFd ctl_;  // AF_INET datagram socket in the device's namespace, for ioctls
  UniqueFd steering_;  // the steering eBPF program, held for the device's life
  uint32_t mtu_ = 1500;
  // Impaired sends from several queues' threads share one impairer.
  mutable std::mutex impair_mu_;
  std::optional<Impairer> impairer_;
  ImpairmentCounters retired_;
  std::atomic<bool> impaired_{false};
  struct Uring;
  struct UringFree {
    void operator()(Uring* u) const noexcept;
  };
  std::vector<std::unique_ptr<Uring, UringFree>> uring_;  // one ring per queue, or none
  // Writes frames (already checked) through queue q's ring; returns how many left.
  Result<size_t> uring_write(uint32_t q, std::span<const std::span<const uint8_t>> frames) noexcept;
};

}  // namespace emulator
