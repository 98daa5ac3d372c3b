#include "emulator/tap_rx_ring.h"

#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace emulator {

Result<std::unique_ptr<TapRxRing>> TapRxRing::create(int tap_fd, uint32_t depth) {
  std::unique_ptr<TapRxRing> r(new TapRxRing());
  r->fd_ = tap_fd;
  r->depth_ = depth;
  r->ring_ = std::make_unique<io_uring>();
  // Room for every posted read plus the cancels sent at teardown.
  if (int e = io_uring_queue_init(2 * depth, r->ring_.get(), 0); e < 0) {
    record_errno("io_uring for receiving", -e);
    return miniport::fail(Status::kNotSupported);
  }
  r->ring_ok_ = true;
  r->efd_ = COEMU_TRY(UniqueFd::eventfd());
  if (int e = io_uring_register_eventfd(r->ring_.get(), r->efd_.get()); e < 0) {
    record_errno("io_uring_register_eventfd", -e);
    return miniport::fail(Status::kNotSupported);
  }
  return r;
}

TapRxRing::~TapRxRing() {
  if (!ring_ok_) return;
  if (posted_ > 0) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
    if (sqe) {
      // Every read on the TAP's fd; each completes with -ECANCELED.
      io_uring_prep_cancel_fd(sqe, fd_, IORING_ASYNC_CANCEL_ALL);
      sqe->user_data = ~uint64_t{0};
      io_uring_submit(ring_.get());
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (posted_ > 0 && std::chrono::steady_clock::now() < deadline) {
      __kernel_timespec ts{0, 10'000'000};
      io_uring_cqe* cqe = nullptr;
      if (io_uring_wait_cqe_timeout(ring_.get(), &cqe, &ts) == 0 && cqe) {
        if (cqe->user_data != ~uint64_t{0}) --posted_;
        io_uring_cqe_seen(ring_.get(), cqe);
      }
    }
  }
  io_uring_queue_exit(ring_.get());
}

bool TapRxRing::post(uint64_t tag, std::span<uint8_t> buf) noexcept {
  if (posted_ >= depth_) return false;
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (!sqe) return false;
  io_uring_prep_read(sqe, fd_, buf.data(), static_cast<unsigned>(buf.size()), 0);
  sqe->user_data = tag;
  ++posted_;
  return true;
}

Result<void> TapRxRing::submit() noexcept {
  const int e = io_uring_submit(ring_.get());
  if (e < 0) return miniport::fail(record_errno("io_uring_submit (receive)", -e));
  return {};
}

size_t TapRxRing::take(uint64_t* tags, int* res, size_t n) noexcept {
  // Clear the eventfd first: a completion arriving after this read sets it
  // again, so none is left unannounced.
  uint64_t v;
  [[maybe_unused]] ssize_t r = ::read(efd_.get(), &v, sizeof v);
  // Cancels are only sent by the destructor, so every completion here is a read.
  size_t k = 0;
  io_uring_cqe* cqe;
  unsigned head;
  io_uring_for_each_cqe(ring_.get(), head, cqe) {
    if (k == n) break;
    tags[k] = cqe->user_data;
    res[k] = cqe->res;
    ++k;
  }
  io_uring_cq_advance(ring_.get(), static_cast<unsigned>(k));
  posted_ -= static_cast<uint32_t>(k);
  return k;
}

}  // namespace emulator
