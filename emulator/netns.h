// Netns: an owned handle (fd) on a Linux network namespace, named ones made and
// removed the way `ip netns add/del` does, so iproute2 sees them; and run_in(),
// which runs code inside a namespace on a short-lived thread (setns affects only
// the calling thread, so the caller's own namespace never changes).
//
//   auto ns = Netns::create("coe-demo-a");              // /run/netns/coe-demo-a
//   auto fd = run_in(*ns, [] { return open_tap(); });  // TAP born inside it
//   Netns::remove("coe-demo-a");                        // idempotent
#pragma once

#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "emulator/unique_fd.h"

namespace emulator {

class Netns {
 public:
  // The calling thread's namespace.
  [[nodiscard]] static Result<Netns> current();
  // Opens "NAME" (in /run/netns), "/path/to/nsfile" or "pid:N".
  // Errors: kInvalidAddress when it does not exist; kFailure otherwise.
  [[nodiscard]] static Result<Netns> open(std::string_view spec);
  // Creates a named namespace. Errors: kInvalidData for a bad name (empty, '/',
  // longer than 64); kNotAccepted when the name exists; kFailure (with
  // last_error) when mounting fails, e.g. without CAP_SYS_ADMIN.
  [[nodiscard]] static Result<Netns> create(const std::string& name);
  // Creates an unnamed namespace that lives as long as the returned handle
  // (and whatever is moved into it). Errors: kFailure without CAP_SYS_ADMIN.
  [[nodiscard]] static Result<Netns> create_anonymous();
  // Removes a name made by create() or `ip netns add`. A missing name is
  // success. The namespace itself dies with its last user.
  [[nodiscard]] static Result<void> remove(const std::string& name);
  // Names in /run/netns, sorted.
  [[nodiscard]] static std::vector<std::string> list();

  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  // The namespace's inode: equal inodes = same namespace.
  [[nodiscard]] uint64_t inode() const noexcept;

 private:
  Netns(UniqueFd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}
  UniqueFd fd_;
  std::string name_;
};

// Enters ns on the calling thread. Errors: kFailure (EPERM without
// CAP_SYS_ADMIN), kInvalidData for an fd that is not a netns.
[[nodiscard]] Result<void> enter(const Netns& ns);

// Runs fn() -> Result<T> on a new, joined thread (for namespace changes that
// must not touch the caller's thread) and carries its last_error() back.
template <class F>
auto on_fresh_thread(F&& fn) -> decltype(fn()) {
  decltype(fn()) out = miniport::fail(Status::kFailure);
  std::string err;
  std::thread t([&] {
    out = fn();
    err = last_error();
  });
  t.join();
  if (!out) set_last_error(err);
  return out;
}

// Runs fn() -> Result<T> on a new thread that first enters ns.
template <class F>
auto run_in(const Netns& ns, F&& fn) -> decltype(fn()) {
  return on_fresh_thread([&]() -> decltype(fn()) {
    if (auto r = enter(ns); !r) return miniport::fail(r.error());
    return fn();
  });
}

}  // namespace emulator
