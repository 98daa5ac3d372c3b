#include "emulator/unique_fd.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace emulator {

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<UniqueFd> UniqueFd::open(const char* path, int flags, int mode) {
  int fd = ::open(path, flags | O_CLOEXEC, mode);
  if (fd < 0) return miniport::fail(record_errno(std::string("open ") + path, errno));
  return UniqueFd(fd);
}

Result<UniqueFd> UniqueFd::eventfd() {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return miniport::fail(record_errno("eventfd", errno));
  return UniqueFd(fd);
}

Status status_from_errno(int err) noexcept {
  switch (err) {
    case 0: return Status::kSuccess;
    case ENOMEM:
    case ENOBUFS:
    case EMFILE:
    case ENFILE:
    case ENOSPC:
    case EAGAIN: return Status::kResources;
    case EINVAL:
    case ERANGE:
    case ENAMETOOLONG: return Status::kInvalidData;
    case EMSGSIZE: return Status::kInvalidLength;
    case ENODEV:
    case ENXIO:
    case ENOENT:
    case EBADFD:
    case EIO: return Status::kAdapterRemoved;
    case EADDRNOTAVAIL:
    case EADDRINUSE: return Status::kInvalidAddress;
    case EOPNOTSUPP:
    case ENOSYS: return Status::kNotSupported;
    case EEXIST:
    case EBUSY: return Status::kNotAccepted;
    case EPERM:
    case EACCES:
    default: return Status::kFailure;
  }
}

namespace {
thread_local std::string g_last_error;
}

const std::string& last_error() noexcept { return g_last_error; }
void set_last_error(std::string msg) { g_last_error = std::move(msg); }

Status record_errno(std::string_view what, int err) {
  g_last_error = std::string(what) + ": " + std::strerror(err);
  return status_from_errno(err);
}

}  // namespace emulator
