#include "emulator/tap_device.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <liburing.h>
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "emulator/clock.h"
#include "emulator/pcap_recorder.h"
#include "miniport/frame.h"

namespace emulator {

namespace {

struct Opened {
  std::string name;
  std::vector<UniqueFd> fds;
  UniqueFd ctl;
};

// Runs in the device's namespace: the netns current when /dev/net/tun is
// opened is where TUNSETIFF creates (or looks up) the device.
Result<Opened> open_here(const TapOptions& o) {
  Opened out;
  for (uint32_t q = 0; q < o.queues; ++q) {
    int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return miniport::fail(record_errno("open /dev/net/tun", errno));
    UniqueFd hold(fd);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, q == 0 ? o.name.c_str() : out.name.c_str(), IFNAMSIZ - 1);
    short flags = IFF_TAP | IFF_NO_PI;
    if (o.queues > 1) flags |= IFF_MULTI_QUEUE;
    // Without TUN_EXCL the kernel silently attaches to an existing device.
    if (!o.attach && q == 0) flags |= IFF_TUN_EXCL;
    if (o.carrier_off && q == 0) flags |= IFF_NO_CARRIER;
    ifr.ifr_flags = flags;
    if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
      int e = errno;
      record_errno("TUNSETIFF " + o.name, e);
      if (e == EBUSY || e == EEXIST) return miniport::fail(Status::kNotAccepted);
      if (e == EINVAL) {
        set_last_error("TUNSETIFF " + o.name + ": " + std::strerror(e) +
                       " (an existing device of that name with other flags?)");
        return miniport::fail(Status::kInvalidData);
      }
      return miniport::fail(Status::kFailure);
    }
    if (q == 0) out.name = ifr.ifr_name;
    if (o.attach && q == 0) {
      // TUNSETIFF without EXCL creates the device when it is missing; attach
      // means "must exist", so a device we just made is a mistake to undo.
      // TUNGETIFF cannot tell; the persistent flag can: ours is not persistent.
      ifreq g{};
      if (::ioctl(fd, TUNGETIFF, &g) == 0 && !(g.ifr_flags & IFF_PERSIST)) {
        set_last_error("no persistent TAP named " + o.name + " to attach to");
        return miniport::fail(Status::kAdapterRemoved);
      }
    }
    if (o.persist && q == 0 && ::ioctl(fd, TUNSETPERSIST, 1) != 0)
      return miniport::fail(record_errno("TUNSETPERSIST " + out.name, errno));
    out.fds.push_back(std::move(hold));
  }
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return miniport::fail(record_errno("socket for ioctls", errno));
  out.ctl.reset(s);
  return out;
}

}  // namespace

struct TapDevice::Uring {
  io_uring ring{};
};

void TapDevice::UringFree::operator()(Uring* u) const noexcept {
  io_uring_queue_exit(&u->ring);
  delete u;
}

TapDevice::~TapDevice() = default;

namespace {
constexpr unsigned kUringDepth = 64;
}

Result<size_t> TapDevice::uring_write(uint32_t q, std::span<const std::span<const uint8_t>> frames) noexcept {
  io_uring& ring = uring_[q]->ring;
  size_t done = 0;
  while (done < frames.size()) {
    const size_t n = std::min<size_t>(frames.size() - done, kUringDepth);
    for (size_t i = 0; i < n; ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      const auto& f = frames[done + i];
      // Not a registered (fixed) file: the ring would then hold the TAP open
      // after close until the kernel tears the ring down, asynchronously, and
      // a persistent TAP could not be re-attached at once (EBUSY). A TAP write
      // completes during the submission itself, in order.
      io_uring_prep_write(sqe, fds_[q].get(), f.data(), static_cast<unsigned>(f.size()), 0);
      sqe->user_data = i;
    }
    int r = io_uring_submit_and_wait(&ring, static_cast<unsigned>(n));
    if (r < 0) return miniport::fail(record_errno("io_uring submit on " + name_, -r));
    size_t ok = 0, seen = 0;
    io_uring_cqe* cqe;
    unsigned head;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      if (cqe->res < 0) ++qc_[q].tx_errors;
      else ++ok;
    }
    io_uring_cq_advance(&ring, static_cast<unsigned>(seen));
    (void)ok;
    done += n;
  }
  return done;
}

Result<std::unique_ptr<TapDevice>> TapDevice::open(const TapOptions& opts) {
  if (opts.name.empty() || opts.name.size() >= IFNAMSIZ || opts.name.find('/') != std::string::npos ||
      opts.name.find(' ') != std::string::npos) {
    set_last_error("bad TAP name '" + opts.name + "' (1..15 characters, no '/' or spaces)");
    return miniport::fail(Status::kInvalidData);
  }
  if (opts.queues < 1 || opts.queues > 16) {
    set_last_error("TAP queues must be within 1..16, got " + std::to_string(opts.queues));
    return miniport::fail(Status::kInvalidData);
  }
  Opened o = opts.netns ? COEMU_TRY(run_in(*opts.netns, [&] { return open_here(opts); }))
                        : COEMU_TRY(open_here(opts));
  std::unique_ptr<TapDevice> t(new TapDevice());
  t->name_ = std::move(o.name);
  t->fds_ = std::move(o.fds);
  t->ctl_ = std::move(o.ctl);
  COEMU_TRY(t->refresh_mtu());
  for (uint32_t q = 0; opts.io != TapIo::kWrite && q < t->fds_.size(); ++q) {
    auto* u = new Uring();
    const int r = io_uring_queue_init(kUringDepth, &u->ring, 0);
    if (r != 0) {
      delete u;
      t->uring_.clear();
      if (opts.io == TapIo::kIoUring)
        return miniport::fail(record_errno("io_uring for " + t->name_ + " (try the write backend)", -r));
      break;  // kAuto: io_uring refused (seccomp, io_uring_disabled, old kernel): write() it is
    }
    t->uring_.emplace_back(u);
  }
  return t;
}

Result<uint32_t> TapDevice::refresh_mtu() {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name_.c_str(), IFNAMSIZ - 1);
  if (::ioctl(ctl_.get(), SIOCGIFMTU, &ifr) != 0)
    return miniport::fail(record_errno("SIOCGIFMTU " + name_, errno));
  mtu_ = static_cast<uint32_t>(ifr.ifr_mtu);
  return mtu_;
}

Result<void> TapDevice::set_carrier(bool on) {
  int v = on ? 1 : 0;
  if (::ioctl(fds_[0].get(), TUNSETCARRIER, &v) != 0)
    return miniport::fail(record_errno("TUNSETCARRIER " + name_, errno));
  return {};
}

Result<void> TapDevice::set_owner(uid_t uid, gid_t gid) {
  if (::ioctl(fds_[0].get(), TUNSETOWNER, static_cast<unsigned long>(uid)) != 0)
    return miniport::fail(record_errno("TUNSETOWNER " + name_, errno));
  if (::ioctl(fds_[0].get(), TUNSETGROUP, static_cast<unsigned long>(gid)) != 0)
    return miniport::fail(record_errno("TUNSETGROUP " + name_, errno));
  return {};
}

void TapDevice::account_rx(uint32_t q, std::span<const uint8_t> frame) noexcept {
  if (recorder_) recorder_->record(frame);
  ++qc_[q].rx_frames;
  qc_[q].rx_bytes += frame.size();
}

Result<void> TapDevice::steer_by_vci() {
  // The program, in eBPF instructions (socket filter; r6 holds the skb for
  // the legacy packet loads):
  //   r6 = r1; r0 = be16 at 12; if r0 != 0x88B6 goto other;
  //   r0 = be32 at 14 (the VCI); exit;  other: r0 = 0; exit
  const bpf_insn prog[] = {
      {BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0},
      {BPF_LD | BPF_ABS | BPF_H, 0, 0, 0, 12},
      {BPF_JMP | BPF_JNE | BPF_K, 0, 0, 2, miniport::kEtherTypeData},
      {BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 14},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
      {BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  static const char kLicense[] = "GPL";
  bpf_attr attr{};
  attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
  attr.insns = reinterpret_cast<uint64_t>(prog);
  attr.insn_cnt = sizeof prog / sizeof prog[0];
  attr.license = reinterpret_cast<uint64_t>(kLicense);
  const int fd = static_cast<int>(::syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr));
  if (fd < 0) return miniport::fail(record_errno("load the VCI steering program", errno));
  UniqueFd prog_fd(fd);
  int pfd = prog_fd.get();
  if (::ioctl(fds_[0].get(), TUNSETSTEERINGEBPF, &pfd) != 0)
    return miniport::fail(record_errno("TUNSETSTEERINGEBPF " + name_, errno));
  steering_ = std::move(prog_fd);
  return {};
}

void TapDevice::write_frame(uint32_t q, std::span<const uint8_t> f) noexcept {
  // A TAP write never pushes back: one call = one frame, and a full receive
  // queue on the far side drops silently (DESIGN.md), so no retry here.
  if (::write(fds_[q].get(), f.data(), f.size()) < 0) ++qc_[q].tx_errors;
}

Result<size_t> TapDevice::send_burst_on(uint32_t q, std::span<const std::span<const uint8_t>> frames) {
  if (q >= fds_.size()) {
    set_last_error("no queue " + std::to_string(q) + " on " + name_);
    return miniport::fail(Status::kInvalidData);
  }
  QueueCounters& c = qc_[q];
  // Frames that fit, up to the first that does not.
  size_t n = 0;
  while (n < frames.size() && !frames[n].empty() && frames[n].size() <= size_t{mtu_} + 14) ++n;
  if (n == 0 && !frames.empty()) {
    set_last_error("frame of " + std::to_string(frames[0].size()) + " bytes does not fit " + name_ + " (MTU " +
                   std::to_string(mtu_) + ")");
    return miniport::fail(Status::kInvalidLength);
  }
  frames = frames.first(n);
  if (impaired_.load(std::memory_order_acquire)) {
    std::lock_guard lock(impair_mu_);
    if (impairer_) {
      const Time now = steady_now();
      for (const auto& f : frames) {
        if (recorder_) recorder_->record(f);
        impairer_->submit(f, now);
        ++c.tx_frames;
        c.tx_bytes += f.size();
      }
      impairer_->release(now, [&](std::span<const uint8_t> f) { write_frame(q, f); });
      return frames.size();
    }
  }
  // A lone frame goes by write(2): one syscall either way, and io_uring's
  // submission and completion cost a round trip 0.3 us more.
  if (!uring_.empty() && frames.size() > 1) {
    for (const auto& f : frames) {
      if (recorder_) recorder_->record(f);
      c.tx_bytes += f.size();
    }
    auto r = uring_write(q, frames);
    if (!r) return r;
    c.tx_frames += *r;
    return *r;
  }
  size_t sent = 0;
  for (const auto& f : frames) {
    if (recorder_) recorder_->record(f);
    if (::write(fds_[q].get(), f.data(), f.size()) < 0) {
      if (errno == EAGAIN) {
        ++c.tx_backpressure;
        break;
      }
      if (errno == EIO || errno == EBADFD || errno == ENODEV) {
        if (sent) break;
        return miniport::fail(record_errno("write " + name_, errno));
      }
      ++c.tx_errors;
    }
    ++c.tx_frames;
    c.tx_bytes += f.size();
    ++sent;
  }
  return sent;
}

Result<size_t> TapDevice::recv_burst_on(uint32_t q, std::span<RxFrame> slots) {
  if (q >= fds_.size()) {
    set_last_error("no queue " + std::to_string(q) + " on " + name_);
    return miniport::fail(Status::kInvalidData);
  }
  size_t n = 0;
  while (n < slots.size()) {
    RxFrame& s = slots[n];
    const ssize_t r = ::read(fds_[q].get(), s.buf.data(), s.buf.size());
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      if (n) break;
      return miniport::fail(record_errno("read " + name_, errno));
    }
    // tun copies at most the buffer and reports what it copied; a frame that
    // filled the buffer exactly may have been cut (buffers are MTU + 14, so
    // only a frame larger than the MTU can).
    s.len = static_cast<size_t>(r);
    s.truncated = s.len == s.buf.size() && s.len > size_t{mtu_} + 14;
    if (s.truncated) ++qc_[q].rx_truncated;
    if (recorder_) recorder_->record(std::span<const uint8_t>(s.buf.data(), s.len));
    ++qc_[q].rx_frames;
    qc_[q].rx_bytes += s.len;
    ++n;
  }
  return n;
}

Result<bool> TapDevice::wait_readable(miniport::Duration timeout) {
  pollfd p{fds_[0].get(), POLLIN, 0};
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(timeout).count();
  int r = ::poll(&p, 1, static_cast<int>(ms));
  if (r < 0) {
    if (errno == EINTR) return false;
    return miniport::fail(record_errno("poll " + name_, errno));
  }
  return r > 0 && (p.revents & POLLIN);
}

void TapDevice::flush_due() {
  if (!impaired_.load(std::memory_order_acquire)) return;
  std::lock_guard lock(impair_mu_);
  if (impairer_) impairer_->release(steady_now(), [&](std::span<const uint8_t> f) { write_frame(0, f); });
}

std::optional<Time> TapDevice::next_deadline() const {
  if (!impaired_.load(std::memory_order_acquire)) return std::nullopt;
  std::lock_guard lock(impair_mu_);
  return impairer_ ? impairer_->next_deadline() : std::nullopt;
}

Result<void> TapDevice::set_impairment(const ImpairmentConfig& cfg) {
  COEMU_TRY(cfg.validate());
  std::lock_guard lock(impair_mu_);
  if (impairer_) {
    impairer_->release(Time::max(), [&](std::span<const uint8_t> f) { write_frame(0, f); });
    retired_ = (retired_ + impairer_->counters());
    impairer_.reset();
  }
  if (cfg.active()) impairer_.emplace(cfg);
  impaired_.store(impairer_.has_value(), std::memory_order_release);
  return {};
}

ImpairmentCounters TapDevice::impairment_counters() const {
  std::lock_guard lock(impair_mu_);
  return impairer_ ? (retired_ + impairer_->counters()) : retired_;
}

}  // namespace emulator
