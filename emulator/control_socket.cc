#include "emulator/control_socket.h"

#include <pthread.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

namespace emulator {

namespace {

using miniport::Status;

constexpr size_t kMaxRequest = 4096;
constexpr int kIoTimeoutMs = 2000;  // a client that stalls does not hold the socket

Result<sockaddr_un> address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) {
    set_last_error("control socket path too long: " + path);
    return miniport::fail(Status::kInvalidData);
  }
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

Result<UniqueFd> unix_socket() {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return miniport::fail(record_errno("socket(AF_UNIX)", errno));
  return UniqueFd(fd);
}

// Waits until fd is ready for `events` or the deadline passes.
bool wait_fd(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

bool write_all(int fd, const std::string& s, std::chrono::steady_clock::time_point deadline) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_fd(fd, POLLOUT, deadline)) return false;
    } else {
      return false;
    }
  }
  return true;
}

// Reads until `stop_at_newline` sees one (requests) or the peer closes
// (answers), within the deadline and `max` bytes.
bool read_until(int fd, std::string& out, bool stop_at_newline, size_t max,
                std::chrono::steady_clock::time_point deadline) {
  char buf[4096];
  while (out.size() < max) {
    if (stop_at_newline && out.find('\n') != std::string::npos) return true;
    if (!wait_fd(fd, POLLIN, deadline)) return false;
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return !stop_at_newline || !out.empty();
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return false;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return false;
}

}  // namespace

ControlSocket::ControlSocket(std::string path, UniqueFd listen, UniqueFd stop, Handler handler)
    : path_(std::move(path)), listen_(std::move(listen)), stop_(std::move(stop)), handler_(std::move(handler)) {
  thread_ = std::thread([this] { run(); });
}

Result<std::unique_ptr<ControlSocket>> ControlSocket::open(const std::string& path, Handler handler) {
  const sockaddr_un addr = COEMU_TRY(address(path));
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) {
    set_last_error("cannot make " + std::filesystem::path(path).parent_path().string() + ": " + ec.message());
    return miniport::fail(Status::kFailure);
  }
  // A socket file that nobody answers on is a dead node's: take its place.
  if (std::filesystem::exists(path, ec)) {
    auto probe = COEMU_TRY(unix_socket());
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      set_last_error("another node answers on " + path);
      return miniport::fail(Status::kNotAccepted);
    }
    ::unlink(path.c_str());
  }
  auto fd = COEMU_TRY(unix_socket());
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    return miniport::fail(record_errno("bind " + path, errno));
  // Not before listen() can anyone connect; and the credentials check in
  // serve() is the guard in any case (the umask is the process's, not ours).
  if (::chmod(path.c_str(), 0600) != 0) {
    const int e = errno;
    ::unlink(path.c_str());
    return miniport::fail(record_errno("chmod " + path, e));
  }
  if (::listen(fd.get(), 16) != 0) {
    const int e = errno;
    ::unlink(path.c_str());
    return miniport::fail(record_errno("listen " + path, e));
  }
  auto stop = UniqueFd::eventfd();
  if (!stop) {
    ::unlink(path.c_str());
    return miniport::fail(stop.error());
  }
  return std::unique_ptr<ControlSocket>(new ControlSocket(path, std::move(fd), std::move(*stop), std::move(handler)));
}

ControlSocket::~ControlSocket() {
  const uint64_t one = 1;
  (void)!::write(stop_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
  ::unlink(path_.c_str());
}

void ControlSocket::run() {
  pthread_setname_np(pthread_self(), "coemu-ctlsock");
  while (true) {
    pollfd p[2] = {{listen_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents) return;
    if (!(p[0].revents & POLLIN)) continue;
    UniqueFd c(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (c.get() < 0) continue;
    serve(c.get());
  }
}

void ControlSocket::serve(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || (cred.uid != 0 && cred.uid != ::getuid())) {
    refused_.fetch_add(1);
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kIoTimeoutMs);
  std::string req;
  if (!read_until(fd, req, true, kMaxRequest, deadline)) return;
  req.resize(req.find('\n') == std::string::npos ? req.size() : req.find('\n'));
  std::string answer = handler_(req);
  answer.push_back('\n');
  if (write_all(fd, answer, deadline)) answered_.fetch_add(1);
}

Result<std::string> ControlSocket::ask(const std::string& path, const std::string& request,
                                       miniport::Duration timeout) {
  const sockaddr_un addr = COEMU_TRY(address(path));
  auto fd = COEMU_TRY(unix_socket());
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    if (e == ENOENT || e == ECONNREFUSED) {
      set_last_error("no node answers on " + path + " (is it running?)");
      return miniport::fail(Status::kAdapterRemoved);
    }
    return miniport::fail(record_errno("connect " + path, e));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string answer;
  if (!write_all(fd.get(), request + "\n", deadline) ||
      !read_until(fd.get(), answer, false, size_t{64} << 20, deadline) || answer.empty()) {
    set_last_error("no answer from " + path + " (a node of another user refuses to answer)");
    return miniport::fail(Status::kFailure);
  }
  if (answer.back() == '\n') answer.pop_back();
  return answer;
}

}  // namespace emulator
