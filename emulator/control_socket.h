// ControlSocket: a running node's local control socket, where `coemu show`
// asks what the node holds. A Unix stream socket, mode 0600, and whatever
// the file mode, only root or this process's own user may talk to it
// (SO_PEERCRED); others are refused and counted. One request line in, one
// answer out, per connection, on a thread of its own.
//
//   auto cs = ControlSocket::open("/run/coemu/nodes/alpha.sock",
//                                 [&](const std::string& req) { return answer(req); });
//   auto reply = ControlSocket::ask("/run/coemu/nodes/alpha.sock", "snapshot", 2s);
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "emulator/unique_fd.h"
#include "miniport/time.h"

namespace emulator {

class ControlSocket {
 public:
  // Answers one request (the line, without its newline); runs on the
  // socket's thread.
  using Handler = std::function<std::string(const std::string& request)>;

  // Binds path (making its directory); a stale socket left by a dead node is
  // replaced. Errors: kNotAccepted when a live node answers on path;
  // kFailure/kResources from the system (last_error() says which).
  [[nodiscard]] static Result<std::unique_ptr<ControlSocket>> open(const std::string& path, Handler handler);
  // Stops and joins the thread, then removes the socket file.
  ~ControlSocket();
  ControlSocket(const ControlSocket&) = delete;
  ControlSocket& operator=(const ControlSocket&) = delete;

  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  [[nodiscard]] uint64_t answered() const noexcept { return answered_.load(); }
  [[nodiscard]] uint64_t refused() const noexcept { return refused_.load(); }  // wrong user

  // Client side: one request, its answer. Errors: kAdapterRemoved when no
  // node listens there; kFailure (timeout, refused) with last_error().
  [[nodiscard]] static Result<std::string> ask(const std::string& path, const std::string& request,
                                               miniport::Duration timeout);

 private:
  ControlSocket(std::string path, UniqueFd listen, UniqueFd stop, Handler handler);
  void run();
  void serve(int fd);

  std::string path_;
  UniqueFd listen_;
  UniqueFd stop_;
  Handler handler_;
  std::atomic<uint64_t> answered_{0}, refused_{0};
  std::thread thread_;
};

}  // namespace emulator
