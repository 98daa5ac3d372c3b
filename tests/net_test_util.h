// Helpers for tests that need CAP_NET_ADMIN: probe by doing the real thing and
// skip with a message when the machine says no.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace coemu_test {

// Moves the calling thread (and threads it starts later) into a fresh network
// namespace that dies with the test process. Returns "" or why it cannot.
inline std::string enter_fresh_netns() {
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::string("cannot open /dev/net/tun: ") + std::strerror(errno);
  ::close(fd);
  if (::unshare(CLONE_NEWNET) != 0)
    return std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno) + " (needs CAP_SYS_ADMIN)";
  return "";
}

// Root privileges for named namespaces (mount in /run/netns) and TAPs.
inline std::string can_make_named_netns() {
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::string("cannot open /dev/net/tun: ") + std::strerror(errno);
  ::close(fd);
  if (::geteuid() != 0) return "named namespaces need root (mounts in /run/netns)";
  return "";
}

inline int count_open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return -1;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n - 1;  // the DIR's own fd
}

}  // namespace coemu_test

#define COEMU_REQUIRE(why_not)                                         \
  do {                                                                 \
    if (std::string w = (why_not); !w.empty()) GTEST_SKIP() << "needs CAP_NET_ADMIN: " << w; \
  } while (0)
