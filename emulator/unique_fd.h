// UniqueFd: sole owner of a file descriptor; closes it on destruction. Plus the
// errno -> Status mapping used by everything in emulator/.
//
//   Result<UniqueFd> fd = UniqueFd::open("/dev/net/tun", O_RDWR);
//   if (!fd) return fail(fd.error());
#pragma once

#include <string>
#include <utility>

#include "miniport/status.h"

namespace emulator {

using miniport::Result;
using miniport::Status;

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  // Opens path with O_CLOEXEC added. Errors: the errno mapping below.
  [[nodiscard]] static Result<UniqueFd> open(const char* path, int flags, int mode = 0);
  // A non-blocking, close-on-exec eventfd (counter starts at 0).
  [[nodiscard]] static Result<UniqueFd> eventfd();

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// Maps an errno value to the closest Status (EAGAIN is not an error and must be
// handled by the caller before asking).
[[nodiscard]] Status status_from_errno(int err) noexcept;

// The text of the last error recorded on this thread by emulator/ code, for
// messages ("TUNSETIFF coe0: Operation not permitted"). Set with set_last_error.
[[nodiscard]] const std::string& last_error() noexcept;
void set_last_error(std::string msg);
// Records "what: strerror(err)" as the last error and returns the mapped status.
Status record_errno(std::string_view what, int err);

}  // namespace emulator
